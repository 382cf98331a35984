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
        # Issue 17 item 9: quotes inside a quoted group, apostrophes, typographic quotes.
        (
            '!q add "so good" ann said',
            ParsedCommand("q", ("add", "so good", "ann", "said"), '!q add "so good" ann said'),
        ),
        (
            '!q add it\'s "so" good',
            ParsedCommand("q", ("add", "it's", "so", "good"), '!q add it\'s "so" good'),
        ),
        (
            "!q \"he said 'hi'\" ok",
            ParsedCommand("q", ("he said 'hi'", "ok"), "!q \"he said 'hi'\" ok"),
        ),
        ("!q 'it's fine' x", ParsedCommand("q", ("it's fine", "x"), "!q 'it's fine' x")),
        ('!q "open and', ParsedCommand("q", ('"open', "and"), '!q "open and')),
        ("!q 5'11\" tall", ParsedCommand("q", ("5'11\"", "tall"), "!q 5'11\" tall")),
        ('!q "a b"c d', ParsedCommand("q", ('"a', 'b"c', "d"), '!q "a b"c d')),
        ("!q C:\\temp", ParsedCommand("q", ("C:\\temp",), "!q C:\\temp")),
        (
            "!q \u201cso good\u201d ann",
            ParsedCommand("q", ("so good", "ann"), "!q \u201cso good\u201d ann"),
        ),
        ('!q ""', ParsedCommand("q", ("",), '!q ""')),
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
