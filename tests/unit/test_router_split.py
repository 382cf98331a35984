"""``rosey.router.split.chunk``: every chat reply cleaned, cut to chat size, capped in total.

Regression for issue 10: a 900 KB plugin reply was sent as one chat message, and plugin
replies went to chat with their escape sequences.
"""

from __future__ import annotations

import pytest

from rosey.router.split import MAX_CHARS, MAX_LINES, MAX_MESSAGES, chunk


def body(message: str) -> str:
    return message.split("] ", 1)[1] if message.startswith("[") else message


def test_a_900_kb_reply_is_capped_with_a_note_of_what_was_left_out() -> None:
    text = "x" * 900_000
    messages = chunk(text.split("\n"))
    assert len(messages) == MAX_MESSAGES
    assert all(len(m) <= MAX_CHARS for m in messages)
    shown = "".join(body(m).split("… (truncated")[0].replace("\n", "") for m in messages)
    assert len(body(messages[-1])) > 200  # the note shares the last message with text
    assert text.startswith(shown)
    assert messages[-1].endswith(f"… (truncated, {len(text) - len(shown)} more characters)")


def test_a_reply_of_a_million_lines_is_capped_without_cleaning_them_all() -> None:
    lines = ["\x1b[2Jline"] * 1_000_000
    messages = chunk(lines)
    assert len(messages) == MAX_MESSAGES
    assert all(len(m.split("\n")) <= MAX_LINES for m in messages)
    assert "\x1b" not in "".join(messages)
    assert "more lines" in messages[-1]


def test_escapes_are_gone_before_the_text_is_measured() -> None:
    evil = "\x1b]52;c;" + "A" * 1000 + "\x07ok"
    assert chunk([evil]) == ["ok"]
    bells = "\x07" * 200  # each becomes 4 visible characters: the cut happens after that
    assert all(len(m) <= MAX_CHARS for m in chunk([bells]))


@pytest.mark.parametrize("text", ["", "4", "ann rolled 2d6: 🎲 3 + 4 = 7", "a\nb\nc"])
def test_a_short_reply_is_one_message_as_it_was(text: str) -> None:
    assert chunk(text.split("\n")) == [text]
