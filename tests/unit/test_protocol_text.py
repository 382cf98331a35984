"""``rosey.protocol.text.clean``: escape sequences removed, controls made visible, text kept.

Regression for issue 10 ("Output that reaches terminals and chat is not cleaned"): a plugin's
reply or stderr tail reached the console, ``rosey plugin status`` and ``!plugin status`` with
its escape sequences (title change, screen clear, clipboard write).
"""

from __future__ import annotations

import json

import pytest

from rosey.protocol.text import clean, clean_lines, json_for_terminal

ESC = "\x1b"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Attacks: whole sequences go.
        (f"a{ESC}]52;c;b3duZWQ={ESC}\\b", "ab"),  # OSC 52 clipboard write, ST-terminated
        (f"a{ESC}]52;c;b3duZWQ=\x07b", "ab"),  # ... BEL-terminated
        (f"{ESC}]0;pwned\x07title", "title"),  # window title
        (f"{ESC}[2J{ESC}[Hcleared", "cleared"),  # clear screen, cursor home
        (f"red {ESC}[31;1mtext{ESC}[0m", "red text"),  # SGR colours
        ("\x9b2Jeight-bit", "eight-bit"),  # 8-bit CSI
        ("\x9d0;t\x9cafter", "after"),  # 8-bit OSC, 8-bit ST
        (f"{ESC}P1$r{ESC}\\dcs", "dcs"),  # DCS (DECRQSS answerback)
        (f"{ESC}_apc{ESC}\\x", "x"),  # APC
        (f"{ESC}creset", "reset"),  # RIS: full reset
        (f"{ESC}(Bcharset", "charset"),  # nF: designate a character set
        (f"{ESC}]8;;http://evil\x07link{ESC}]8;;\x07", "link"),  # hyperlink
        (f"unterminated {ESC}]0;swallows the rest", "unterminated "),
        (f"lone{ESC}", "lone"),
        # Stray controls are escaped visibly.
        ("bell\x07", "bell\\x07"),
        ("nul\x00", "nul\\x00"),
        ("over\rwrite", "over\\x0dwrite"),  # carriage return rewrites a line
        ("back\x08space", "back\\x08space"),
        ("del\x7f", "del\\x7f"),
        ("nel\x85", "nel\\x85"),  # C1 next line
        ("csi8\x9b", "csi8"),  # an 8-bit CSI without parameters is still a sequence
        ("abc\u202edcba", "abc\\u202edcba"),  # bidi override (Trojan Source)
        ("\u2066isolate\u2069", "\\u2066isolate\\u2069"),
        # Kept: layout and every valid printable character.
        ("line one\nline two", "line one\nline two"),
        ("tab\there", "tab\there"),
        ("crlf\r\nline", "crlf\nline"),
        ("ann rolled 1d1: 🎲 1", "ann rolled 1d1: 🎲 1"),
        ("Grüße, 日本語, עברית, العربية, Ωμέγα", "Grüße, 日本語, עברית, العربية, Ωμέγα"),
        ("zero\u200bwidth \u00a0nbsp \u2028sep", "zero\u200bwidth \u00a0nbsp \u2028sep"),
        ("", ""),
    ],
)
def test_clean(text: str, expected: str) -> None:
    assert clean(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("two\nlines", "two\\nlines"),  # a forged second log line
        ("crlf\r\nline", "crlf\\nline"),
        ("para\u2029sep", "para\\u2029sep"),
        (f"{ESC}[2Jplain", "plain"),
        ("tab\tkept", "tab\tkept"),
    ],
)
def test_clean_one_line(text: str, expected: str) -> None:
    assert clean(text, one_line=True) == expected


@pytest.mark.parametrize(
    "text", ["plain", "ann rolled 1d1: 🎲 1", "a\nb", "x\\x07 already escaped", "Grüße"]
)
def test_clean_text_comes_back_as_the_same_object(text: str) -> None:
    assert clean(text) is text


@pytest.mark.parametrize(
    "text", [f"{ESC}]52;c;eA==\x07x", "a\x07\x9b1m\u202e", f"{ESC}{ESC}[[", "\x1b\x1b]\x07"]
)
def test_clean_is_idempotent_and_leaves_no_control(text: str) -> None:
    once = clean(text)
    assert clean(once) == once
    assert not any((ord(c) < 0x20 and c not in "\t\n") or 0x7F <= ord(c) <= 0x9F for c in once)


def test_clean_lines_splits_lines_a_newline_was_hidden_in() -> None:
    assert clean_lines(["a\nb", f"{ESC}[1mc"]) == ["a", "b", "c"]


def test_json_for_terminal_keeps_the_data_and_drops_raw_controls() -> None:
    data = {"t": f"{ESC}]0;x\x07 \x9b2J \u202e ok 🎲", "n": [1, "\x7f"]}
    text = json_for_terminal(json.dumps(data, ensure_ascii=False))
    assert json.loads(text) == data
    assert not any((ord(c) < 0x20 and c != "\n") or 0x7F <= ord(c) <= 0x9F for c in text)
    assert "\u202e" not in text
    assert "🎲" in text
