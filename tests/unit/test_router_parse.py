"""Chat command parsing."""

from __future__ import annotations

import pytest

from rosey.router.parse import CommandSyntaxError, ParsedCommand, parse_command


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hello", None),
        ("!", None),
        ("! hi", None),
        ("  !roll 2d6 ", ParsedCommand("roll", ("2d6",), "!roll 2d6")),
        ("!ROLL", ParsedCommand("roll", (), "!ROLL")),
        ('!quote add "a b" c', ParsedCommand("quote", ("add", "a b", "c"), '!quote add "a b" c')),
        ("!quote add it's", ParsedCommand("quote", ("add", "it's"), "!quote add it's")),
        ("!8ball will it?", ParsedCommand("8ball", ("will", "it?"), "!8ball will it?")),
    ],
)
def test_parse(text: str, expected: ParsedCommand | None) -> None:
    assert parse_command(text) == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("!ro.ll", "not a command name"),
        ("!" + "x" * 40, "not a command name"),
        ("!a " + "x" * 3000, "too long"),
    ],
)
def test_malformed_commands_say_what_is_allowed(text: str, problem: str) -> None:
    with pytest.raises(CommandSyntaxError, match=problem):
        parse_command(text)
