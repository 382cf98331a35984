"""Chat command parsing: ``!roll 2d6`` → ``ParsedCommand('roll', ('2d6',))``. Pure."""

from __future__ import annotations

import re
from dataclasses import dataclass

PREFIX = "!"
MAX_TEXT = 2000
_COMMAND = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
#: Opening quote → its closing quote: ASCII, and the typographic ones phones type.
QUOTES = {'"': '"', "'": "'", "\u201c": "\u201d", "\u2018": "\u2019", "\u00ab": "\u00bb"}


@dataclass(frozen=True, slots=True)
class ParsedCommand:
    command: str
    args: tuple[str, ...]
    text: str


class CommandSyntaxError(ValueError):
    """A line that starts with the prefix but is not a well-formed command."""

    def __init__(self, text: str, problem: str) -> None:
        self.text = text
        self.problem = problem
        super().__init__(problem)


def parse_command(text: str, prefix: str = PREFIX) -> ParsedCommand | None:
    """The command in a chat line, None for ordinary chat, ``CommandSyntaxError`` if malformed.

    Arguments are split by ``split_args``.
    """
    stripped = text.strip()
    if not stripped.startswith(prefix) or stripped == prefix:
        return None
    body = stripped[len(prefix) :]
    if body[:1].isspace():
        return None  # "! hello" is chat, not a command
    if len(stripped) > MAX_TEXT:
        raise CommandSyntaxError(
            text, f"command too long ({len(stripped)} characters; at most {MAX_TEXT})"
        )
    word, _, rest = body.partition(" ")
    word = word.lower()
    if not _COMMAND.match(word):
        raise CommandSyntaxError(
            text,
            f"{prefix}{word[:40]} is not a command name (letters, digits, '_' or '-', up to 32)",
        )
    return ParsedCommand(word, split_args(rest), stripped)


def split_args(rest: str) -> tuple[str, ...]:
    """Words split on whitespace; a quote at the start of a word groups words up to its match.

    Made for chat, not a shell: a quoted group ends at a closing quote followed by whitespace
    or the end (``"so good" ann`` → ``so good``, ``ann``), so quotes inside it stay as typed
    (``"he said 'hi'"`` → ``he said 'hi'``); a quote inside a word is a letter (``it's``,
    ``5'11"``), an opening quote never closed is a letter too, and a backslash is just a
    backslash (``C:\\temp``). Typographic quotes (``“…”``, ``‘…’``, ``«…»``) group as well.
    """
    if not any(q in rest for q in QUOTES):
        return tuple(rest.split())  # the common case
    args: list[str] = []
    i, n = 0, len(rest)
    while i < n:
        if rest[i].isspace():
            i += 1
            continue
        close = QUOTES.get(rest[i])
        if close is not None:
            end = _closing(rest, i + 1, close)
            if end is not None:
                args.append(rest[i + 1 : end])
                i = end + 1
                continue
        start = i
        while i < n and not rest[i].isspace():
            i += 1
        args.append(rest[start:i])
    return tuple(args)


def _closing(rest: str, start: int, close: str) -> int | None:
    """Index of the first ``close`` at or after ``start`` followed by whitespace or the end."""
    at = rest.find(close, start)
    while at != -1:
        if at + 1 == len(rest) or rest[at + 1].isspace():
            return at
        at = rest.find(close, at + 1)
    return None
