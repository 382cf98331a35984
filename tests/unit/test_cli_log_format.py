"""rosey.cli.common.CleanFormatter: the bot's log lines, cleaned, formatted once per record."""

from __future__ import annotations

import logging
import sys

from rosey.cli.common import CleanFormatter
from rosey.cli.run import JournalFormatter


class Counted:
    """An argument that counts how often the message was formatted."""

    def __init__(self) -> None:
        self.calls = 0

    def __str__(self) -> str:
        self.calls += 1
        return "plugin \x1b[31mred\x1b[0m\x07 said"


def record(arg: object, exc: bool = False) -> logging.LogRecord:
    info = None
    if exc:
        try:
            raise ValueError("bad \x1b]0;title\x07")
        except ValueError:
            info = sys.exc_info()
    return logging.LogRecord("rosey.manager", logging.INFO, __file__, 1, "x: %s", (arg,), info)


def test_the_message_is_formatted_and_cleaned_once_for_every_handler() -> None:
    arg = Counted()
    rec = record(arg)
    terminal = CleanFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    core = CleanFormatter("%(levelname)-7s %(name)s: %(message)s")
    first, second = terminal.format(rec), core.format(rec)
    assert arg.calls == 1
    assert first.endswith(" INFO    rosey.manager: x: plugin red\\x07 said")
    assert second == "INFO    rosey.manager: x: plugin red\\x07 said"


def test_tracebacks_are_cleaned_and_the_journal_keeps_one_line() -> None:
    rec = record("y", exc=True)
    text = CleanFormatter("%(name)s: %(message)s").format(rec)
    assert text.startswith("rosey.manager: x: y\nTraceback")
    assert "\x1b" not in text
    assert "bad " in text
    journal = JournalFormatter("%(name)s: %(message)s").format(rec)
    assert journal.startswith("<6>rosey.manager: x: y\\nTraceback")
    assert "\n" not in journal
