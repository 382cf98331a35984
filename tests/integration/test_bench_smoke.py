"""The benchmarks run end to end with tiny sizes (their figures are not checked here)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"


async def run_bench(script: str, *args: str, timeout: float = 120) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(BENCH / script),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with asyncio.timeout(timeout):
            output, _ = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = output.decode(errors="replace")
    assert proc.returncode == 0, text
    return text


async def test_recovery_bench_runs() -> None:
    text = await run_bench("recovery.py", "--kills", "2", "--plugins", "3")
    assert "SIGKILL → ready again" in text
    assert "start_all of 3 → all ready" in text
    assert "targets: recovery ratio" in text
