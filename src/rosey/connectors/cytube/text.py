"""Chat text in and out of CyTube (pure, no I/O).

Out: the server cuts a line at ``max-chat-message-length`` (320 by default) counted as
JavaScript counts (UTF-16 code units: an emoji outside the BMP is 2), turns control characters
into spaces, and takes a line that starts with ``/`` as a command (``/me``, ``/clear``...).
``split_reply`` therefore sends each line of a reply as its own chat line, cut at word
boundaries within the limit, never between the two halves of a surrogate pair, and
``guard_command`` keeps a line from being read as a command.

The guard is a ZERO WIDTH SPACE (U+200B) put before the ``/``: CyTube shows nothing for it, it
is not whitespace to JavaScript's ``trim()`` (a leading space could be trimmed away and the
command run after all), it is not a control character the server would replace, and it costs one
code unit, which ``split_reply`` counts.

In: ``msg`` is HTML: the server escaped what the user typed (``&lt;``) and wrapped links in
``<a>`` tags. A command is read from ``incoming_text`` (tags stripped, entities unescaped); the
raw form is kept for plugins that want it.
"""

from __future__ import annotations

import html
import re

__all__ = [
    "COMMAND_GUARD",
    "MAX_LENGTH",
    "guard_command",
    "incoming_text",
    "split_reply",
    "utf16_len",
]

#: CyTube's default ``max-chat-message-length``.
MAX_LENGTH = 320
#: Put before a leading ``/`` so that the server shows the line instead of running it.
COMMAND_GUARD = "\u200b"

_TAG = re.compile(r"<[^>]*>")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def utf16_len(text: str) -> int:
    """Length as JavaScript's ``String.length``: characters beyond U+FFFF count twice."""
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def guard_command(line: str) -> str:
    """``line`` as the server will show it rather than run it as a ``/command``.

    Leading whitespace is looked through: the server may trim it before it looks for ``/``.
    """
    if line.lstrip().startswith("/"):
        return COMMAND_GUARD + line
    return line


def _cut(line: str, limit: int) -> tuple[str, str]:
    """Split ``line`` into a head of at most ``limit`` code units and the rest.

    Prefer the last space in the head (the space is dropped); without one, cut at the limit,
    stepping back over a character that would not fit whole (a surrogate pair is never halved).
    """
    units = 0
    end = 0
    for end, ch in enumerate(line):  # noqa: B007 - `end` is used after the loop
        units += 2 if ord(ch) > 0xFFFF else 1
        if units > limit:
            break
    else:
        return line, ""
    head = line[:end]
    space = head.rfind(" ")
    if space > 0:
        return head[:space], line[space + 1 :]
    return head, line[end:]


def split_reply(text: str, *, limit: int = MAX_LENGTH, allow_commands: bool = False) -> list[str]:
    """The chat lines that carry ``text``, each at most ``limit`` UTF-16 code units.

    Each line of ``text`` is its own chat line (the server would turn a newline into a space);
    blank lines are dropped; control characters become spaces, as the server would make them.
    Unless ``allow_commands``, each chat line is guarded against being read as a ``/command``
    (after the split, so that a continuation that starts with ``/`` is guarded too).
    """
    if limit < 2:
        raise ValueError("limit must leave room for one character and the command guard")
    out: list[str] = []
    for raw in text.split("\n"):
        rest = _CONTROL.sub(" ", raw).rstrip()
        while rest.strip():
            # The guard costs one code unit: leave room for it before cutting.
            guard = not allow_commands and rest.lstrip().startswith("/")
            head, rest = _cut(rest, limit - 1 if guard else limit)
            if head.strip():
                out.append(guard_command(head) if guard else head)
    return out


def incoming_text(msg: str) -> str:
    """The text a user typed, from the HTML the server sends: tags stripped, entities unescaped.

    The server escapes every ``<`` a user types, so each ``<...>`` left is markup it added
    (links, emotes): dropping it keeps the link's visible text.
    """
    return html.unescape(_TAG.sub("", msg)).strip()
