"""Spawn→ready of one plugin, next to the floor measured in the same run.

    .venv/bin/python bench/plugin_start.py [--runs 30]

The floor is a bare child process that imports nats, connects to the same server, publishes one
message and says so over a pipe: what any NATS-connected Python process costs. The plugin is a
trivial one, spawned exactly as ``rosey run`` spawns plugins (the confined sandbox spawner with
default limits, control socket, bootstrap, SDK runner, subscriptions, readiness). Also prints
the RSS/USS of an idle plugin.
Targets (issue "Plugin runtime"): ratio ≤ 1.3, idle RSS ≤ 30 MiB.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import psutil
from floor import floor_once, summary, write_trivial_plugins

from rosey.bus.server import EmbeddedServer
from rosey.protocol import subjects
from rosey.sandbox.confine import open_sandbox
from rosey.sandbox.process import PlainSpawner, PluginProcess, SpawnSpec


def write_trivial_plugin(root: Path) -> Path:
    return write_trivial_plugins(root / "plugins", 1, "trivial") / "trivial0"


async def spawn_ready(spawner: PlainSpawner, spec: SpawnSpec) -> tuple[float, PluginProcess]:
    started = time.perf_counter()
    process = await spawner.spawn(spec)
    while True:
        message = await process.receive()
        if message is None:
            raise RuntimeError(
                "plugin exited before ready:\n" + "\n".join(process.stderr_tail.lines())
            )
        if message.get("type") == "ready":
            return time.perf_counter() - started, process


async def main(runs: int) -> None:
    with tempfile.TemporaryDirectory(prefix="rosey-bench-") as tmp:
        root = Path(tmp)
        folder = write_trivial_plugin(root)
        async with EmbeddedServer(root / "nats") as server, open_sandbox(root / "state") as sandbox:
            # The production spawner: cgroups/rlimits as the host offers, warden registration.
            spawner = sandbox.spawner()
            spec = SpawnSpec(
                name="trivial",
                plugin_dir=folder,
                data_dir=root / "data" / "trivial",
                log_path=root / "logs" / "trivial.log",
                bootstrap={
                    "name": "trivial",
                    "plugin_dir": str(folder),
                    "entrypoint": "trivial:Trivial",
                    "data_dir": str(root / "data" / "trivial"),
                    "nats_url": server.url,
                    "user": None,
                    "password": None,
                    "inbox_prefix": subjects.plugin_inbox_prefix("trivial"),
                    "config": {},
                    "stop_timeout_s": 5,
                },
            )
            floors: list[float] = []
            starts: list[float] = []
            rss = uss = 0.0
            layers: list[str] = []
            # Interleave the two so drift on a shared machine hits both alike.
            for i in range(runs + 2):
                floor = await floor_once(server.url)
                start, process = await spawn_ready(spawner, spec)
                if i >= 2:  # the first runs warm the page cache
                    floors.append(floor)
                    starts.append(start)
                if i == runs + 1:
                    await asyncio.sleep(1.0)  # idle: let the plugin settle before measuring memory
                    info = psutil.Process(process.pid).memory_full_info()
                    rss, uss = info.rss / 2**20, info.uss / 2**20
                    layers = list(process.layers)
                await process.stop(5)
    floor_med, floor_p90 = summary(floors)
    start_med, start_p90 = summary(starts)
    python = sys.version.split()[0]
    print(f"plugin spawn→ready over {runs} runs (python {python}, {os.cpu_count()} cores)")
    print(f"{'':24}{'median ms':>12}{'p90 ms':>10}")
    print(f"{'floor (bare nats child)':24}{floor_med * 1000:12.1f}{floor_p90 * 1000:10.1f}")
    print(f"{'rosey plugin':24}{start_med * 1000:12.1f}{start_p90 * 1000:10.1f}")
    print(f"ratio (median): {start_med / floor_med:.2f}   (target ≤ 1.3)")
    print(f"enforcement layers: {', '.join(layers) or 'none'}")
    print(f"idle plugin memory: RSS {rss:.1f} MiB, USS {uss:.1f} MiB   (target RSS ≤ 30 MiB)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    asyncio.run(main(max(1, parser.parse_args().runs)))
