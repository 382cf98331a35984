"""The benchmarks run end to end with tiny sizes (their figures are not checked here)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from botproc import run_process

BENCH = Path(__file__).resolve().parents[2] / "bench"


async def run_bench(script: str, *args: str, timeout: float = 120) -> str:
    """Run a bench (its output; it must exit 0)."""
    code, text, _ = await run_process(
        sys.executable,
        str(BENCH / script),
        *args,
        timeout=timeout,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert code == 0, text
    return text


async def test_recovery_bench_runs() -> None:
    text = await run_bench("recovery.py", "--kills", "2", "--plugins", "3")
    assert "SIGKILL → ready again" in text
    assert "start_all of 3 → all ready" in text
    assert "targets: recovery ratio" in text
