"""Tests of the dice plugin: notation parsing (pure) and the plugin on a real bus."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from dice import Roll, describe, parse_roll, roll

from rosey.sdk import UsageError
from rosey.sdk.testing import PluginHarness

HERE = Path(__file__).parent


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("d6", Roll(1, 6, 0)),
        ("1d6", Roll(1, 6, 0)),
        ("2d6+3", Roll(2, 6, 3)),
        ("3D10-2", Roll(3, 10, -2)),
        ("100d1000", Roll(100, 1000, 0)),
    ],
)
def test_parse_valid(text: str, expected: Roll) -> None:
    assert parse_roll(text) == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("x", "not dice notation"),
        ("2d", "not dice notation"),
        ("2x6", "not dice notation"),
        ("0d6", "between 1 and 100 dice"),
        ("101d6", "between 1 and 100 dice"),
        ("1d0", "between 1 and 1000 sides"),
        ("1d1001", "between 1 and 1000 sides"),
        ("1d6+99999999", "modifier"),
    ],
)
def test_parse_invalid_says_what_is_allowed(text: str, problem: str) -> None:
    with pytest.raises(UsageError, match=problem):
        parse_roll(text)


def test_roll_stays_in_range() -> None:
    rng = random.Random(7)
    spec = Roll(5, 6, 2)
    for _ in range(200):
        faces, total = roll(spec, rng)
        assert len(faces) == 5
        assert all(1 <= f <= 6 for f in faces)
        assert total == sum(faces) + 2


def test_describe_long_rolls_are_cut() -> None:
    spec = Roll(30, 1, 0)
    assert describe(spec, [1] * 30, 30).endswith(", …)")


async def test_roll_and_flip_on_a_real_bus() -> None:
    async with PluginHarness.from_folder(HERE) as bot:
        assert await bot.command("!roll 1d1", user="ann") == "ann rolled 1d1: 🎲 1"
        assert await bot.command("!roll 3d1+2") == "tester rolled 3d1+2: 🎲 5 (1, 1, 1 + 2)"
        flip = await bot.command("!flip")
        assert flip is not None
        assert flip.rsplit(" ", 1)[-1] in ("heads", "tails")


async def test_bad_notation_is_a_clear_reply_not_an_error() -> None:
    async with PluginHarness.from_folder(HERE, config={"max_dice": 3}) as bot:
        reply = await bot.request("!roll 4d6")
        assert reply["ok"] is True
        assert reply["text"] == "roll between 1 and 3 dice (got 4)"
        assert bot.runtime("dice").command_errors == 0
