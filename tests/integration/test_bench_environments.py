"""``bench/environments.py`` runs end to end with a tiny size (its figures are not checked)."""

from __future__ import annotations

from test_bench_smoke import run_bench


async def test_environments_bench_runs() -> None:
    text = await run_bench("environments.py", "--runs", "1", timeout=300)
    assert "uv, cold (empty cache)" in text
    assert "uv, cached, another key" in text
    assert "own env (plain spawn)" in text
    assert "layers, own env (plain spawn): " in text
