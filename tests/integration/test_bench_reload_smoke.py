"""bench/reload.py runs end to end with tiny sizes, so it cannot rot (figures not checked:
speed is for the bench to print; its process tree must be gone afterwards)."""

from __future__ import annotations

import pytest
from test_bench_smoke_more import run_bench

pytestmark = pytest.mark.slow


async def test_reload_bench_runs() -> None:
    code, text = await run_bench(
        "reload.py", "--rate", "100", "--reloads", "2", "--baseline-s", "0.5", "--restarts", "1"
    )
    assert code == 0, text
    for row in ("baseline", "reload ", "restart ", "p99 during reloads / without", "switched"):
        assert row in text, text
