"""bench/chat.py runs end to end with tiny sizes (its figures are not checked here)."""

from __future__ import annotations

from test_bench_smoke import run_bench


async def test_chat_bench_runs() -> None:
    out = await run_bench("chat.py", "--smoke", "--gap", "0.12", timeout=60)
    assert "core / floor at p50" in out
    assert "8/8" in out
