"""Outgoing lines split and guarded as CyTube counts and reads them; incoming HTML to text."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cytube.rules import process_msg, truncate_utf16
from rosey.connectors.cytube.text import (
    COMMAND_GUARD,
    guard_command,
    incoming_text,
    split_reply,
    utf16_len,
)


@pytest.mark.parametrize(
    ("text", "units"),
    [("", 0), ("abc", 3), ("é", 1), ("😀", 2), ("a😀b", 4), ("𝄞" * 3, 6), ("中文", 2)],
)
def test_utf16_len_counts_as_javascript(text: str, units: int) -> None:
    assert utf16_len(text) == units


@pytest.mark.parametrize(
    ("line", "guarded"),
    [
        ("/me waves", COMMAND_GUARD + "/me waves"),
        ("  /clear", COMMAND_GUARD + "  /clear"),  # the server may trim before it looks
        ("a /b", "a /b"),
        (">greentext", ">greentext"),  # shown, not run: left alone
        ("hello", "hello"),
    ],
)
def test_guard_command(line: str, guarded: str) -> None:
    assert guard_command(line) == guarded


@pytest.mark.parametrize(
    ("text", "limit", "lines"),
    [
        ("hello world", 320, ["hello world"]),
        ("hello world", 8, ["hello", "world"]),  # at the space, the space dropped
        ("abcdefghij", 4, ["abcd", "efgh", "ij"]),  # no space: cut at the limit
        ("one\ntwo\n\nthree", 320, ["one", "two", "three"]),  # one chat line per line
        ("a\tb\x07c", 320, ["a b c"]),  # control characters become spaces
        ("😀😀😀", 3, ["😀", "😀", "😀"]),  # never half a surrogate pair
        ("/me waves", 320, [COMMAND_GUARD + "/me waves"]),
        ("aaaa /bbb", 5, ["aaaa", COMMAND_GUARD + "/bbb"]),  # a continuation is guarded too
        ("/abcdef", 4, [COMMAND_GUARD + "/ab", "cdef"]),  # the guard's unit is counted
        ("   \n  ", 320, []),
    ],
)
def test_split_reply(text: str, limit: int, lines: list[str]) -> None:
    assert split_reply(text, limit=limit) == lines


def test_split_reply_may_send_commands_when_meant() -> None:
    assert split_reply("/me waves", allow_commands=True) == ["/me waves"]


def test_a_2000_character_reply_arrives_whole() -> None:
    words = " ".join(f"word{i}" for i in range(400))[:2000]
    lines = split_reply(words)
    assert all(utf16_len(line) <= 320 for line in lines)
    assert " ".join(lines) == words


pieces = st.lists(
    st.sampled_from(["a", "bc", " ", "  ", "/", "😀", "é", "中", "\n", "\t", "word", ">"]),
    max_size=200,
)


@settings(max_examples=300, deadline=None)
@given(text=pieces.map("".join), limit=st.integers(min_value=2, max_value=40))
def test_split_reply_properties(text: str, limit: int) -> None:
    lines = split_reply(text, limit=limit)
    for line in lines:
        # Within the limit as the server counts, so it is never cut by the server...
        assert utf16_len(line) <= limit
        assert truncate_utf16(line, limit) == line
        # ...never read as a command, never blank, no lone surrogate.
        assert not line.lstrip().startswith("/")
        assert line.strip()
        line.encode("utf-8")
    # Nothing but whitespace is lost, and the order is kept.
    shown = "".join(line.removeprefix(COMMAND_GUARD) for line in lines)
    assert "".join(shown.split()) == "".join(text.split())


@pytest.mark.parametrize(
    ("html", "text"),
    [
        ("a &lt; b &amp; c", "a < b & c"),
        (
            '<a href="https://x.org/?a=1&amp;b=2" target="_blank" rel="noopener noreferrer">'
            "https://x.org/?a=1&amp;b=2</a>",
            "https://x.org/?a=1&b=2",
        ),
        ("!roll 2d6", "!roll 2d6"),
        ("&quot;hi&quot; &#39;there&#39;", "\"hi\" 'there'"),
        ("<img src=x> !help", "!help"),
    ],
)
def test_incoming_text(html: str, text: str) -> None:
    assert incoming_text(html) == text


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=100))
def test_incoming_text_undoes_the_servers_escaping(typed: str) -> None:
    """Whatever a user types comes back as typed (bar outer whitespace and link markup)."""
    assert incoming_text(process_msg(typed, limit=1000)) == typed.strip()
