"""Text from plugins made safe to show: on a terminal, in chat, in a log line. Pure.

A plugin's reply, its stderr and anything it puts in a message are attacker-controlled. Shown
as they are, escape sequences act on whoever reads them: ``ESC ] 52`` writes the reader's
clipboard, ``ESC ] 0`` sets the window title, ``ESC [ 2J`` clears the screen, a carriage return
overwrites what the line said, bidi overrides reorder it, a newline forges a second log line.

:func:`clean` is the one function every face passes such text through:

- whole escape sequences (CSI, OSC, DCS, SOS, PM, APC, and the short ``ESC x`` forms, in
  their 7-bit and 8-bit spellings) are removed: they carry no text a reader could use;
- every other control character (C0 but tab and newline, DEL, C1) and the bidi embedding,
  override and isolate characters are escaped visibly (``\\x07``, ``\\u202e``), so a reader
  sees that something was there;
- ``\\r\\n`` becomes ``\\n``; with ``one_line`` newlines (and U+2028/U+2029) are escaped too,
  for log lines that quote plugin text;
- any other text, all valid Unicode included, passes unchanged (and unchanged text is
  returned as the same object, after one regex search: the common case costs little).

:func:`json_for_terminal` does the same for JSON text printed on a terminal (``--json``):
it keeps the JSON valid and its data identical by writing those characters as ``\\uXXXX``.

Standard library only: plugin processes may import this package.
"""

from __future__ import annotations

import re

__all__ = ["clean", "clean_lines", "json_for_terminal"]

#: Characters a reader must not receive raw (ESC and the 8-bit introducers included).
_CONTROLS = "\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069"
_UNSAFE = re.compile(f"[{_CONTROLS}]")
_UNSAFE_ONE_LINE = re.compile(f"[{_CONTROLS}\n\u2028\u2029]")

# ECMA-48: CSI params [0-?]*, intermediates [ -/]*, final [@-~]. String controls (OSC, DCS,
# SOS, PM, APC) run to BEL or ST (ESC \ or 0x9c); an unterminated one runs to the end, as a
# terminal would swallow it. ESC followed by intermediates and a final is an nF/Fp/Fe/Fs escape.
_SEQUENCE = re.compile(
    r"(?:\x1b\[|\x9b)[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]?"
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[\x20-\x2f]*[\x30-\x7e]?"
)


def _visible(match: re.Match[str]) -> str:
    char = match.group()
    if char == "\n":
        return "\\n"
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def clean(text: str, *, one_line: bool = False) -> str:
    """``text`` without escape sequences and with other control characters made visible.

    Tab and newline are kept (they lay out chat and terminal text); ``one_line`` escapes
    newlines too, so a quoted text cannot start a forged log line.
    """
    unsafe = _UNSAFE_ONE_LINE if one_line else _UNSAFE
    if unsafe.search(text) is None:
        return text
    return unsafe.sub(_visible, _SEQUENCE.sub("", text.replace("\r\n", "\n")))


def clean_lines(lines: list[str]) -> list[str]:
    """Each line cleaned (a line that held a newline may now be several: split them)."""
    return [part for line in lines for part in clean(line).split("\n")]


#: C1, DEL and bidi controls as JSON escapes; C0 is escaped by ``json.dumps`` itself.
_JSON_ESCAPES = {
    code: f"\\u{code:04x}"
    for code in [0x7F, *range(0x80, 0xA0), *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
}


def json_for_terminal(text: str) -> str:
    """JSON text (from ``json.dumps(..., ensure_ascii=False)``) safe to print on a terminal.

    Outside strings JSON is ASCII punctuation, so these characters can only sit inside a
    string, where ``\\uXXXX`` means the same: the data a program reads back is unchanged.
    """
    return text.translate(_JSON_ESCAPES)
