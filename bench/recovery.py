"""Crash recovery and start-all, next to the spawn→ready floor measured in the same run.

    .venv/bin/python bench/recovery.py [--kills 20] [--plugins 50]

- **floor**: a bare child process (``python -I -c``) that imports nats, connects to the same
  server, publishes one message and says so over a pipe: spawn→ready of any NATS-connected
  Python process. Measured ``--kills`` times, interleaved with the kills.
- **recovery**: a trivial plugin under a real ``PluginManager`` (backoff 0) is SIGKILLed; the
  time from the kill until it is ready again (a new process, ``running``), ``--kills`` times.
  Target: median ≤ 1.3 × floor median.
- **start-all**: ``start_all()`` of ``--plugins`` trivial plugins until all are ready, against
  ``plugins × floor ÷ cores`` (perfect use of every core). Target ≤ 1.3 × that.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from floor import floor_once, summary, write_trivial_plugins

from rosey.bus.client import EventBus
from rosey.bus.server import EmbeddedServer
from rosey.config import BotConfig
from rosey.lifecycle.states import State
from rosey.manager.life import PluginLife
from rosey.manager.manager import PluginManager
from rosey.protocol import subjects

TARGET = 1.3


async def manager_on(url: str, plugins: Path, state: Path) -> tuple[PluginManager, EventBus]:
    config = BotConfig.model_validate(
        {
            "plugins_dir": [plugins],
            "state_dir": state,
            "max_crash_count": 1_000_000,
            "backoff": {"initial_s": 0, "factor": 1, "max_s": 0, "jitter": 0},
        }
    )
    bus = EventBus(url, name="bench-manager", inbox_prefix=subjects.MANAGER_INBOX_PREFIX)
    await bus.connect()
    manager = PluginManager(config, nats_url=url, bus=bus)
    await manager.initialize()
    return manager, bus


def replaced(old: int) -> Callable[[PluginLife], bool]:
    """Running again, as a new process."""
    return lambda s: s.state is State.RUNNING and s.pid not in (None, old)


async def recovery(url: str, root: Path, kills: int) -> tuple[list[float], list[float]]:
    """(recovery times, floor times), interleaved so drift hits both alike."""
    plugins = write_trivial_plugins(root / "recovery-plugins", 1, "victim")
    manager, bus = await manager_on(url, plugins, root / "recovery-state")
    supervisor = manager.supervisors["victim0"]
    times: list[float] = []
    floors: list[float] = []
    try:
        await manager.start_plugin("victim0")
        for i in range(kills + 1):
            floor = await floor_once(url)
            old = supervisor.pid
            assert old is not None
            started = time.perf_counter()
            os.kill(old, signal.SIGKILL)
            await supervisor.wait_for(replaced(old), timeout=30)
            if i > 0:  # the first round warms the page cache
                times.append(time.perf_counter() - started)
                floors.append(floor)
    finally:
        await manager.shutdown()
        await bus.close()
    return times, floors


async def start_all(url: str, root: Path, count: int) -> float:
    plugins = write_trivial_plugins(root / "start-all-plugins", count, "p")
    manager, bus = await manager_on(url, plugins, root / "start-all-state")
    try:
        started = time.perf_counter()
        await manager.start_all()
        elapsed = time.perf_counter() - started
        states = {s.state for s in manager.supervisors.values()}
        if states != {State.RUNNING}:
            raise RuntimeError(f"start_all left plugins in {states}")
        return elapsed
    finally:
        await manager.shutdown()
        await bus.close()


async def main(kills: int, count: int) -> None:
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="rosey-bench-") as tmp:
        root = Path(tmp)
        async with EmbeddedServer(root / "nats") as server:
            times, floors = await recovery(server.url, root, kills)
            all_ready = await start_all(server.url, root, count)
    floor_med, floor_p90 = summary(floors)
    rec_med, rec_p90 = summary(times)
    ideal = count * floor_med / cores
    print(
        f"crash recovery and start-all (python {sys.version.split()[0]}, {cores} cores, "
        f"{kills} kills, {count} plugins)"
    )
    print(f"{'':34}{'median ms':>11}{'p90 ms':>10}{'floor ms':>10}{'ratio':>8}")
    print(
        f"{'spawn→ready floor (bare nats child)':34}{floor_med * 1e3:11.1f}{floor_p90 * 1e3:10.1f}"
    )
    rec_ratio = rec_med / floor_med
    print(
        f"{'SIGKILL → ready again':34}{rec_med * 1e3:11.1f}{rec_p90 * 1e3:10.1f}"
        f"{floor_med * 1e3:10.1f}{rec_ratio:8.2f}"
    )
    all_ratio = all_ready / ideal
    print(
        f"{f'start_all of {count} → all ready':34}{all_ready * 1e3:11.1f}{'':>10}"
        f"{ideal * 1e3:10.1f}{all_ratio:8.2f}"
    )
    print(
        f"targets: recovery ratio ≤ {TARGET} ({'met' if rec_ratio <= TARGET else 'missed'}); "
        f"start-all ≤ {TARGET} × {count} × floor ÷ {cores} cores "
        f"({'met' if all_ratio <= TARGET else 'missed'})"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--kills", type=int, default=20, help="SIGKILLs to time (default 20)")
    parser.add_argument("--plugins", type=int, default=50, help="plugins for start_all (50)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the kills are on purpose: no crash warnings
    asyncio.run(main(max(1, args.kills), max(1, args.plugins)))
