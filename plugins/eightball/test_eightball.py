"""Tests of the eightball plugin."""

from __future__ import annotations

from pathlib import Path

from eightball import ANSWERS, answer

from rosey.sdk.testing import PluginHarness

HERE = Path(__file__).parent


def test_consistent_answers_are_stable_and_valid() -> None:
    first = answer("Will it rain?")
    assert first in ANSWERS
    assert answer("  will it RAIN?  ") == first


async def test_answers_a_question() -> None:
    async with PluginHarness.from_folder(HERE) as bot:
        reply = await bot.command("!8ball will the tests pass?")
        assert reply is not None
        assert reply.startswith("🎱 ")
        assert reply.removeprefix("🎱 ") in ANSWERS
        assert (await bot.command("!eightball again?") or "").removeprefix("🎱 ") in ANSWERS


async def test_consistent_mode_uses_the_question() -> None:
    async with PluginHarness.from_folder(HERE, config={"consistent": True}) as bot:
        assert await bot.command("!8ball is it?") == f"🎱 {answer('is it?')}"


async def test_no_question_gets_usage() -> None:
    async with PluginHarness.from_folder(HERE) as bot:
        assert await bot.command("!8ball") == "ask a question: !8ball will it rain tomorrow?"
