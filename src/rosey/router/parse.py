"""Chat command parsing: ``!roll 2d6`` → ``ParsedCommand('roll', ('2d6',))``. Pure."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

PREFIX = "!"
MAX_TEXT = 2000
_COMMAND = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


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

    Arguments split like a shell (quotes group words); an unbalanced quote falls back to plain
    whitespace splitting rather than refusing the line, since chat users do type apostrophes.
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
    if '"' not in rest and "'" not in rest and "\\" not in rest:
        args = tuple(rest.split())  # the common case, without shlex's cost
    else:
        try:
            args = tuple(shlex.split(rest))
        except ValueError:
            args = tuple(rest.split())
    return ParsedCommand(word, args, stripped)
