"""``PluginHarness`` runs plugins under the bot's broker permissions (issue 17, item 13).

Regression: the harness used to give every plugin an unrestricted connection, so a plugin's
tests passed while the bot refused the plugin what the tests exercised. The fixture plugin
``eavesdropper`` subscribes to chat and posts to it without the grants for either.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from rosey.sdk.testing import GrantRefused, PluginHarness, PluginUnderTest

EAVESDROPPER = Path(__file__).parents[1] / "fixtures" / "plugins" / "eavesdropper"


async def test_subscribing_to_chat_without_the_grant_fails_at_once() -> None:
    started = time.monotonic()
    with pytest.raises(GrantRefused) as refused:
        async with PluginHarness.from_folder(EAVESDROPPER):
            pytest.fail("the harness started a plugin the bot's broker refuses")
    assert str(refused.value).startswith(
        "plugin 'eavesdropper' may not subscribe to 'rosey.events.message': it needs the grant "
        "`events.message` in plugin.yaml (permissions: [events.message]); the bot's broker "
        "refuses it the same way"
    )
    assert refused.value.grant == "events.message"
    assert time.monotonic() - started < 5  # a refusal, not a timeout


async def test_with_enforcement_off_the_same_plugin_passes() -> None:
    async with PluginHarness.from_folder(EAVESDROPPER, enforce_grants=False) as bot:
        await bot.say("psst")
        await bot.wait_handled(1)
        assert await bot.command("!heard") == "psst"
        assert await bot.command("!shout hey") == "shouted"
        assert (await bot.next_chat())["text"] == "HEY"
        assert bot.refusals == []


async def test_with_the_grant_it_hears_chat() -> None:
    plugin = PluginUnderTest.from_folder(EAVESDROPPER)
    plugin.permissions = ["events.message"]
    async with PluginHarness(plugin) as bot:
        await bot.say("psst")
        await bot.wait_handled(1)
        assert await bot.command("!heard") == "psst"


async def test_posting_to_chat_without_the_grant_names_it() -> None:
    """``send_chat`` without ``chat.send``: the command that did it fails, naming the grant
    (the broker drops the line; a test waiting for it would otherwise time out)."""
    plugin = PluginUnderTest.from_folder(EAVESDROPPER)
    plugin.permissions = ["events.message"]
    async with PluginHarness(plugin) as bot:
        with pytest.raises(GrantRefused, match=r"needs the grant `chat.send`") as refused:
            await bot.command("!shout hey")
        assert refused.value.subject == "rosey.platform.test.send"
        assert [r.grant for r in bot.refusals] == ["chat.send"]
        # Raised once: the harness goes on (and leaves) without raising it again.
        assert await bot.command("!heard") == ""
