"""Tests of the notes plugin: the example of ``Plugin.storage()``, under the bot's grants."""

from __future__ import annotations

from pathlib import Path

import pytest

from rosey.errors import BusError
from rosey.sdk.testing import GrantRefused, PluginHarness, PluginUnderTest

HERE = Path(__file__).parent


async def test_set_get_and_delete_a_note() -> None:
    async with PluginHarness.from_folder(HERE) as bot:
        assert await bot.command("!note wifi") == "no note called wifi"
        assert await bot.command("!note set WiFi hunter2 on the fridge") == "noted: wifi"
        assert await bot.command("!note wifi") == "wifi: hunter2 on the fridge"
        assert await bot.command("!note del wifi") == "forgot wifi"
        assert await bot.command("!note wifi") == "no note called wifi"
        assert await bot.command("!note del wifi") == "no note called wifi"


async def test_bad_input_gets_usage() -> None:
    async with PluginHarness.from_folder(HERE, config={"max_text": 5}) as bot:
        assert await bot.command("!note") == (
            "usage: !note NAME | !note set NAME TEXT | !note del NAME"
        )
        reply = await bot.command("!note set a.b text")
        assert reply is not None
        assert reply.startswith("a note name is 1 to 32 letters")
        assert await bot.command("!note set x too long") == "a note holds at most 5 characters"


async def test_notes_survive_a_restart(tmp_path: Path) -> None:
    """The bucket lives in the broker's store (the bot's state folder), not in the plugin."""
    async with PluginHarness.from_folder(HERE, data_dir=tmp_path) as bot:
        await bot.command("!note set door code 1234")
    async with PluginHarness.from_folder(HERE, data_dir=tmp_path) as bot:
        assert await bot.command("!note door") == "door: code 1234"


async def test_a_full_bucket_is_a_reply_not_a_crash() -> None:
    """The bucket's quota (here 1 MiB) refuses what goes beyond it; what it holds stays, and
    the plugin keeps running."""
    async with PluginHarness.from_folder(HERE, storage_mb=1, config={"max_text": 1000}) as bot:
        assert await bot.command("!note set first kept") == "noted: first"
        bucket = await bot.plugin.storage()  # the plugin's own bucket, on its own connection
        keys = (f"filler{i}" for i in range(1000))
        for size in (300_000, 50_000, 5_000, 500):  # fill it up to the last few hundred bytes
            with pytest.raises(BusError, match="resource limits exceeded"):  # noqa: PT012
                while True:
                    await bucket.put(next(keys), b"x" * size)
        reply = await bot.command("!note set last " + "y" * 600)
        assert reply is not None
        assert reply.startswith("could not keep the note last: storage refused it")
        assert await bot.command("!note first") == "first: kept"


async def test_without_the_storage_grant_the_harness_names_it() -> None:
    """The bot would refuse this plugin its bucket; so does the harness, saying why."""
    plugin = PluginUnderTest.from_folder(HERE)
    plugin.permissions = []
    async with PluginHarness(plugin) as bot:
        with pytest.raises(GrantRefused, match=r"needs the grant `storage` in plugin.yaml"):
            await bot.command("!note wifi")
