"""What every ``rosey`` command shares: exit codes, colour, error lines, clean log lines."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Iterator

from rosey.protocol.text import clean

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_PIPE_CLOSED",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "CleanFormatter",
    "colour",
    "fail",
    "pause",
    "stop_on_signals",
]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3
#: The output's reader went away (128 + SIGPIPE, what a shell shows for a process it ended).
EXIT_PIPE_CLOSED = 141


class CleanFormatter(logging.Formatter):
    """Log lines without terminal escapes: many quote what a plugin wrote or chose.

    The message is formatted and cleaned once per record, whichever of the bot's handlers
    (the terminal, the core log) writes it first: kept on the record (``clean_message``).
    What the format adds around it (time, level, logger name) is the bot's own.
    """

    def format(self, record: logging.LogRecord) -> str:
        message: str | None = getattr(record, "clean_message", None)
        if message is None:
            message = record.clean_message = clean(record.getMessage())
        record.message = message
        if self.usesTime():
            record.asctime = self.formatTime(record, self.datefmt)
        text = self.formatMessage(record)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            text = f"{text}\n{clean(record.exc_text)}"
        if record.stack_info:
            text = f"{text}\n{clean(self.formatStack(record.stack_info))}"
        return text


def colour() -> bool:
    """Colour only for a terminal, and never when NO_COLOR is set (https://no-color.org)."""
    return (
        sys.stdout.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"
    )


def fail(prefix: str, text: str, code: int) -> int:
    print(clean(f"{prefix}: {text}"), file=sys.stderr)
    return code


@contextlib.contextmanager
def stop_on_signals() -> Iterator[asyncio.Event]:
    """An event Ctrl-C or SIGTERM sets while the block runs: how a ``-f`` loop ends (exit 0)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        yield stop
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


async def pause(stop: asyncio.Event, seconds: float) -> None:
    """Wait ``seconds``, or less if ``stop`` is set meanwhile."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stop.wait()
