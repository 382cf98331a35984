"""End to end: ``rosey run`` as a real process, a test connector, SIGTERM, nothing left."""

from __future__ import annotations

import asyncio
import stat
import time
from pathlib import Path

from botproc import EXAMPLE_PLUGINS, run_bot
from helpers import wait_gone


async def test_roll_then_sigterm_leaves_nothing_behind(tmp_path: Path) -> None:
    async with run_bot(tmp_path) as bot:
        runtime_file = bot.state_dir / "runtime.json"
        assert stat.S_IMODE(runtime_file.stat().st_mode) == 0o600
        assert bot.runtime["pid"] == bot.pid
        assert bot.runtime["nats_url"].startswith("nats://127.0.0.1:")

        assert await bot.chat("!roll 1d1", user="ann") == "ann rolled 1d1: 🎲 1"
        listing = await bot.chat("!plugin list")
        assert "dice: running" in listing
        assert "eightball: running" in listing
        assert (await bot.chat("!nosuchthing")).startswith("unknown command !nosuchthing")

        children = bot.descendants()
        plugin_pids = [p["stats"]["pid"] for p in (await bot.manage("list"))["result"]["plugins"]]
        examples = len(list(EXAMPLE_PLUGINS.glob("*/plugin.yaml")))
        assert len(plugin_pids) == examples
        assert set(plugin_pids) <= set(children)
        assert len(children) >= examples + 1  # the example plugins and the nats-server

        code = await bot.terminate()
        assert code == 0, "\n".join(bot.log[-30:])
        assert not runtime_file.exists()
        assert await wait_gone(children, timeout=5) == []


async def test_unreachable_nats_url_fails_fast_with_a_reason(tmp_path: Path) -> None:
    # A port nobody listens on: bind one, note it, close it.
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    started = time.monotonic()
    async with run_bot(
        tmp_path, extra_args=["--nats-url", f"nats://127.0.0.1:{port}"], ready=False
    ) as bot:
        async with asyncio.timeout(15):
            code = await bot.proc.wait()
        elapsed = time.monotonic() - started
    assert code != 0
    assert elapsed < 10, f"took {elapsed:.1f} s"
    text = "\n".join(bot.log)
    assert f"127.0.0.1:{port}" in text
    assert "could not reach a NATS server" in text


async def test_broken_config_is_a_usage_error_naming_the_field(tmp_path: Path) -> None:
    async with run_bot(tmp_path, config="max_crash_count: lots\n", ready=False) as bot:
        async with asyncio.timeout(15):
            code = await bot.proc.wait()
    assert code == 2
    assert any("max_crash_count" in line for line in bot.log), bot.log
