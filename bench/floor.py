"""What the benches compare against: a bare Python child that imports nats, connects, publishes.

Shared by ``plugin_start.py`` and ``recovery.py`` so both measure the same floor the same way.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

#: The floor child: spawn → import nats → connect → publish → "r" on the pipe. Like the plugin
#: runner (``rosey.bus.client``), it keeps nats-py from importing aiohttp (~150 ms it never uses),
#: so the floor is the best a bare NATS-connected process can do.
FLOOR_SCRIPT = """
import asyncio, os, sys
sys.modules["aiohttp"] = None
import nats
del sys.modules["aiohttp"]
async def main():
    nc = await nats.connect(sys.argv[1])
    await nc.publish("bench.floor", b"up")
    await nc.flush()
    os.write(int(sys.argv[2]), b"r")
    await asyncio.sleep(3600)
asyncio.run(main())
"""

#: A plugin that does nothing but start.
TRIVIAL_MODULE = "from rosey.sdk import Plugin\n\n\nclass Trivial(Plugin):\n    pass\n"


async def floor_once(url: str) -> float:
    """Seconds from spawn until the floor child has connected and published."""
    read_fd, write_fd = os.pipe()
    started = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-I", "-c", FLOOR_SCRIPT, url, str(write_fd), pass_fds=(write_fd,)
    )
    os.close(write_fd)
    loop = asyncio.get_running_loop()
    try:
        await loop.run_in_executor(None, os.read, read_fd, 1)
        return time.perf_counter() - started
    finally:
        os.close(read_fd)
        proc.kill()
        await proc.wait()


def write_trivial_plugins(root: Path, count: int, prefix: str) -> Path:
    """``count`` trivial plugins ``<prefix>0 ...`` under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        folder = root / f"{prefix}{i}"
        folder.mkdir()
        (folder / "plugin.yaml").write_text(
            f"name: {prefix}{i}\nversion: 1.0.0\nentrypoint: trivial:Trivial\n"
        )
        (folder / "trivial.py").write_text(TRIVIAL_MODULE)
    return root


def summary(samples: list[float]) -> tuple[float, float]:
    """Median and p90."""
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return statistics.median(ordered), p90
