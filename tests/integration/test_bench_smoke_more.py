"""bench/supervisors.py, bench/chaos.py and bench/stop.py run end to end with tiny sizes, so
they cannot rot.

Their figures are not checked (speed is for the benches to print, not for tests to assert);
the chaos soak's verdicts are correctness, so its exit status is. Every process a bench
started, however deep, is gone afterwards.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import psutil
import pytest

from helpers import wait_gone

pytestmark = pytest.mark.slow

BENCH = Path(__file__).resolve().parents[2] / "bench"


async def run_bench(script: str, *args: str, timeout: float = 90) -> tuple[int, str]:
    """Run a bench; its exit status and output. Its descendants are watched and must end."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(BENCH / script),
        *args,
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
        async with asyncio.timeout(timeout):
            output, _ = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
    assert await wait_gone(seen, timeout=10) == [], "a bench left processes behind"
    assert proc.returncode is not None
    return proc.returncode, output.decode(errors="replace")


async def test_supervisors_bench_runs() -> None:
    code, text = await run_bench(
        "supervisors.py", "--n", "2", "--kills", "1", "--idle-seconds", "0.5"
    )
    assert code == 0, text
    for row in ("all up (own terms)", "recovery up, median", "idle CPU", "alive 1 s after SIGKILL"):
        assert row in text, text
    assert "rosey/supd" in text, text
    assert "rosey/circus" in text, text
    assert "targets for rosey:" in text, text
    # Nothing left mounted. (Under load the bench used to kill Rosey's warden with the orphans
    # before it had unmounted the data folders: a race this run does not always hit.)
    mounts = await asyncio.to_thread(Path("/proc/mounts").read_text)
    assert "/rosey-bench-" not in mounts, mounts


async def test_chaos_bench_runs_and_its_verdicts_hold() -> None:
    code, text = await run_bench(
        "chaos.py",
        *("--minutes", "0.2", "--plugins", "4", "--disrupt-every", "5", "--rate", "20"),
    )
    assert code == 0, text
    assert "ok     the manager never died" in text, text
    assert "broker disruptions 2" in text, text
    assert "FAILED" not in text, text


async def test_stop_bench_runs() -> None:
    code, text = await run_bench("stop.py", "--n", "2", "--runs", "1", timeout=120)
    assert code == 0, text
    assert "2 bare children, SIGTERM → all gone" in text, text
    assert "SIGTERM → all plugin processes gone" in text, text
