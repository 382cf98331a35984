"""The HTTP face fuzzed from its own OpenAPI description against a live bot (schemathesis).

Every check schemathesis has (no server error, status codes and content types the description
declares, responses that match its schemas, auth that cannot be skipped, 405 for undeclared
methods, negative data refused...) over generated requests to every operation but the endless
event stream (tested in test_http_api.py). A fixed seed keeps runs repeatable; the example
count keeps the run around ten seconds.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from botproc import EXAMPLE_PLUGINS, FIXTURE_PLUGINS, run_bot, run_process
from httpface import HTTP_ON

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
EXAMPLES = 40


async def test_the_api_matches_its_openapi_description_under_fuzzing(tmp_path: Path) -> None:
    plugins = [EXAMPLE_PLUGINS / "dice", FIXTURE_PLUGINS / "api_base"]
    assert SCHEMATHESIS.exists(), "schemathesis is missing: run ./dev test (installs .[dev])"
    async with run_bot(tmp_path, plugins_dirs=plugins, config=HTTP_ON) as bot:
        url, token = bot.runtime["http_url"], bot.runtime["http_token"]
        code, report, _ = await run_process(
            str(SCHEMATHESIS),
            "run",
            f"{url}/api/openapi.json",
            "--header",
            f"Authorization: Bearer {token}",
            "--checks",
            "all",
            "--exclude-path",
            "/api/events",
            "--max-examples",
            str(EXAMPLES),
            "--seed",
            "20261127",
            "--workers",
            "1",
            "--request-timeout",
            "30",
            "--report-dir",
            str(tmp_path / "report"),
            cwd=tmp_path,
            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "NO_COLOR": "1"},
            timeout=100,
            stderr=asyncio.subprocess.STDOUT,
        )
        assert code == 0, report[-6000:]
        assert "Tested: 8" in report, report[-3000:]  # 5, and install, update, remove
        # The bot is still up and answering after the fuzzing (which may stop or disable dice:
        # it finds the names in the replies).
        assert bot.proc.returncode is None
        assert (await bot.manage("list"))["ok"] is True
        tracebacks = [i for i, line in enumerate(bot.log) if "Traceback" in line]
        assert not tracebacks, "\n".join(bot.log[tracebacks[0] - 3 : tracebacks[0] + 30])
