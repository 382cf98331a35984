"""bench/stop.py runs end to end with tiny sizes, so it cannot rot (its figures are for it to
print, not for a test to assert). Every process it started, however deep, is gone afterwards."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import psutil
import pytest

from helpers import wait_gone

pytestmark = pytest.mark.slow

BENCH = Path(__file__).resolve().parents[2] / "bench"


async def test_stop_bench_runs() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(BENCH / "stop.py"),
        *("--n", "2", "--runs", "1"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    seen: set[int] = set()

    async def watch() -> None:
        while proc.returncode is None:
            try:
                seen.update(p.pid for p in psutil.Process(proc.pid).children(recursive=True))
            except psutil.NoSuchProcess:
                return
            await asyncio.sleep(0.1)

    watcher = asyncio.create_task(watch())
    try:
        async with asyncio.timeout(120):
            output, _ = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
    text = output.decode(errors="replace")
    assert await wait_gone(seen, timeout=10) == [], "the bench left processes behind"
    assert proc.returncode == 0, text
    assert "2 bare children, SIGTERM → all gone" in text, text
    assert "SIGTERM → all outside pids gone" in text, text
