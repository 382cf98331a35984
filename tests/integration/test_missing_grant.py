"""A missing grant says so at once, naming the grant (issue 17 item 12).

Before: ``storage()`` without the grant failed as ``RequestTimeout: no reply on $JS.API ...``
after 2 s, a call as "no reply within 2 s", and a plugin opening its storage in ``on_start``
crash-looped to disabled with no hint, although the broker had refused at once. Now the
runtime raises ``MissingGrant`` as soon as the broker's refusal arrives; the reply, the
plugin's log and its status name the grant. Real fixture plugins under the bot's enforced
broker.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from botproc import FIXTURE_PLUGINS, BotProcess, run_bot

NEEDS_STORAGE = "it needs the grant `storage` in plugin.yaml (permissions: [storage])"


async def test_missing_grants_are_named_in_the_reply_log_and_status(tmp_path: Path) -> None:
    folders = (FIXTURE_PLUGINS / "grantless", FIXTURE_PLUGINS / "grantless_start")
    async with run_bot(tmp_path, plugins_dirs=folders) as bot:
        reply = await bot.chat("!kvuse")
        assert "plugin 'grantless' may not publish to" in reply, reply
        assert NEEDS_STORAGE in reply
        assert "RequestTimeout" not in reply

        reply = await bot.chat("!callout")
        assert "it needs the grant `plugins.call:other` in plugin.yaml" in reply, reply

        assert await bot.chat("!announce") == "announced"  # a publish cannot wait for it...
        # ...the refusal is reported instead: in the bot's log and the plugin's status.
        await bot.wait_for_log("it needs the grant `chat.send` in plugin.yaml", timeout=10)
        status = (await bot.manage("status", {"plugin": "grantless"}))["result"]
        assert status["state"] == "running"
        assert "it needs the grant `chat.send` in plugin.yaml" in status["last_error"]
        text = await plugin_log_with(bot, "grantless", "it needs the grant `chat.send`")
        assert NEEDS_STORAGE in text
        assert "it needs the grant `plugins.call:other` in plugin.yaml" in text

        status = (await bot.manage("status", {"plugin": "grantless_start"}))["result"]
        assert status["state"] in ("crashed", "stopped", "disabled"), status
        assert NEEDS_STORAGE in (status["last_error"] or ""), status["last_error"]


async def plugin_log_with(bot: BotProcess, plugin: str, needle: str, timeout: float = 10) -> str:
    """The plugin's log once it holds ``needle`` (it is written by the plugin's process,
    independently of the bot's own report), within ``timeout``."""
    async with asyncio.timeout(timeout):
        while True:
            reply = await bot.manage("logs", {"plugin": plugin, "lines": 200})
            text = "\n".join(reply["result"]["lines"])
            if needle in text:
                return text
            await asyncio.sleep(0.05)
