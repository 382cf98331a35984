"""Per-plugin log files with a size cap and rotation, fed from the plugin's pipes.

The manager reads the plugin's stdout and stderr continuously, so a plugin printing forever
never blocks on a full pipe, and writes them here: ``<name>.log`` plus ``backups`` rotated
files of at most ``max_bytes`` each, so the disk use of one plugin is bounded by
``max_bytes × (backups + 1)``. The last stderr lines are kept in memory for status, cleaned
of terminal escapes and control characters (``rosey.protocol.text.clean``): they end up in
``last_error``, so in the bot's log, ``rosey plugin status`` and chat. The log files keep the
bytes as written (faces that print them clean them).

Every line gets a UTC timestamp when the manager reads it, so the core's log and every
plugin's can be merged in time order (``rosey logs``, ``rosey.api.logstream``). A line is
``STAMP | TEXT`` for what the plugin wrote and ``STAMP ──── NAME started (pid N) ────`` for the
manager's marker at each start, stop and crash (:func:`write_marker`). The stamp and the
``| `` are written by the manager before the plugin's bytes, and the file rotates only between
lines, so no plugin output can pass for a marker, a timestamp or another source. The core's own
log (:class:`CoreLogHandler`, ``rosey-core.log``: not a valid plugin name) has the same stamps.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import time
from pathlib import Path

from rosey.protocol.text import clean

DEFAULT_MAX_BYTES = 1024 * 1024
DEFAULT_BACKUPS = 2
TAIL_LINES = 20
_READ_SIZE = 64 * 1024
#: The core's log file in ``<state-dir>/logs/`` (a hyphen: no plugin can be called that).
CORE_LOG_NAME = "rosey-core.log"
#: A line longer than this is written as several stamped lines (keeps a line inside one file).
MAX_RECORD = 8 * 1024
#: What follows the stamp on a line the plugin wrote, and around a marker line.
OUTPUT_TAG = "| "
MARKER_BAR = "────"


class RotatingLog:
    """An append-only file that rotates at ``max_bytes``."""

    def __init__(
        self, path: Path, *, max_bytes: int = DEFAULT_MAX_BYTES, backups: int = DEFAULT_BACKUPS
    ) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._size = os.fstat(self._fd).st_size
        #: Bytes written since this log was opened (rotation discards, this keeps counting).
        self.written = 0
        #: Bytes that could not be written (disk full, file gone) and were dropped.
        self.dropped = 0

    def write(self, data: bytes) -> None:
        while data:
            room = self.max_bytes - self._size
            if room <= 0:
                try:
                    self._rotate()
                except OSError:
                    self.dropped += len(data)
                    return
                continue
            chunk, data = data[:room], data[room:]
            try:
                os.write(self._fd, chunk)
            except OSError:
                # A full or broken disk must not stop the pump: the pipe would fill and
                # freeze the plugin. Drop the output instead (``dropped`` tells how much).
                self.dropped += len(chunk)
                continue
            self._size += len(chunk)
            self.written += len(chunk)

    def write_lines(self, block: bytes) -> None:
        """Append whole lines (``block`` ends in a newline), rotating only between lines.

        A line is never split across two files, so every file starts at a line the bot wrote;
        only a line longer than ``max_bytes`` on its own is cut (``write``).
        """
        with contextlib.suppress(OSError):
            # Markers are appended through a file descriptor of their own (write_marker).
            self._size = os.fstat(self._fd).st_size
        while block:
            room = self.max_bytes - self._size
            if len(block) <= room:
                self.write(block)
                return
            fits = block.rfind(b"\n", 0, max(room, 0)) + 1  # whole lines that fit
            if fits == 0 and self._size == 0:  # one line longer than a whole file
                fits = block.find(b"\n") + 1 or len(block)
            if fits:
                self.write(block[:fits])
                block = block[fits:]
                continue
            try:
                self._rotate()
            except OSError:
                self.dropped += len(block)
                return

    def _rotate(self) -> None:
        os.close(self._fd)
        for index in range(self.backups, 0, -1):
            source = (
                self.path.with_name(f"{self.path.name}.{index - 1}") if index > 1 else self.path
            )
            target = self.path.with_name(f"{self.path.name}.{index}")
            if source.exists():
                os.replace(source, target)
        if self.backups == 0:
            self.path.unlink(missing_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        self._size = 0

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class StreamTail:
    """The last lines of a stream, for ``last_error``: cleaned, at most 500 characters each."""

    def __init__(self, lines: int = TAIL_LINES) -> None:
        self._lines: collections.deque[str] = collections.deque(maxlen=lines)
        self._partial = b""

    def feed(self, data: bytes) -> None:
        data = self._partial + data
        *complete, self._partial = data.split(b"\n")
        # Only the last maxlen lines can survive: skip decoding the rest of a flood.
        for raw in complete[-(self._lines.maxlen or 1) :]:
            self._lines.append(_line(raw))
        if len(self._partial) > 4096:
            self._partial = self._partial[-4096:]

    def lines(self, n: int | None = None) -> list[str]:
        items = list(self._lines)
        if self._partial:
            items.append(_line(self._partial))
        return items if n is None else items[-n:]


def _line(raw: bytes) -> str:
    return clean(raw[:2000].decode("utf-8", "replace").rstrip("\r"), one_line=True)[:500]


def stamp(when: float | None = None) -> str:
    """A UTC timestamp with milliseconds, fixed width, so text order is time order."""
    when = time.time() if when is None else when
    seconds = int(when)
    millis = int((when - seconds) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


STAMP_LENGTH = len(stamp(0))


class LineStamper:
    """Cuts one stream's bytes into lines and prefixes each with ``STAMP | ``.

    A line still being written waits (at most ``MAX_RECORD`` bytes) for its end, so that the
    stdout and stderr of one plugin, pumped into the same file, never meet inside a line.
    """

    def __init__(self, log: RotatingLog) -> None:
        self.log = log
        self._partial = b""
        # A stamped line must fit in one file, or its end would start the next one unstamped.
        self._cut = max(1, min(MAX_RECORD, log.max_bytes - STAMP_LENGTH - len(OUTPUT_TAG) - 2))

    def feed(self, data: bytes, when: float | None = None) -> int:
        """Write the complete lines of ``data``; the bytes written (stamps included)."""
        prefix = f"{stamp(when)} {OUTPUT_TAG}".encode()
        data = self._partial + data
        end = data.rfind(b"\n") + 1
        complete, partial = data[:end], data[end:]
        cut = self._cut
        if len(complete) <= cut or max(map(len, complete.split(b"\n"))) <= cut:
            # The usual case, at C speed: a flood of empty lines costs no Python loop.
            block = prefix + complete[:-1].replace(b"\n", b"\n" + prefix) + b"\n"
        else:
            pieces = [
                line[i : i + cut]
                for line in complete.split(b"\n")[:-1]
                for i in range(0, len(line) or 1, cut)
            ]
            block = b"".join(prefix + piece + b"\n" for piece in pieces)
        while len(partial) >= cut:
            block += prefix + partial[:cut] + b"\n"
            partial = partial[cut:]
        self._partial = partial
        if block:
            self.log.write_lines(block)
        return len(block)

    def flush(self) -> None:
        """End of the stream: an unterminated last line is written as it is."""
        if self._partial:
            self.log.write_lines(f"{stamp()} {OUTPUT_TAG}".encode() + self._partial + b"\n")
            self._partial = b""


def marker_text(plugin: str, what: str) -> str:
    """``──── dice started (pid 123) ────``: where one run of a plugin begins or ends."""
    return f"{MARKER_BAR} {plugin} {what} {MARKER_BAR}"


def write_marker(path: Path, plugin: str, what: str) -> None:
    """Append a marker line to a plugin's log (the manager's own words, never the plugin's).

    Appended through a descriptor of its own, so it works whether or not the plugin's process
    (and its :class:`RotatingLog`) is still there; ``O_APPEND`` keeps it whole beside the
    pumps' writes. Errors are the caller's (a full disk must not stop a supervisor: it
    ignores ``OSError``).
    """
    line = f"{stamp()} {marker_text(plugin, what)}\n".encode()
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
    try:
        fd = os.open(path, flags, 0o600)
    except FileNotFoundError:  # no folder yet (the first marker: the folder is made once)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, flags, 0o600)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


class CoreLogHandler(logging.Handler):
    """The core's log file: every record, stamped like the plugins' lines, rotated and capped.

    A record of several lines (a traceback, a quoted stderr tail) gets the stamp on each line
    and ``|`` after the level column on the following ones, so it reads as one record and no
    quoted text starts a line of its own.
    """

    def __init__(
        self, path: Path, *, max_bytes: int = DEFAULT_MAX_BYTES, backups: int = DEFAULT_BACKUPS
    ) -> None:
        super().__init__()
        self.log = RotatingLog(path, max_bytes=max_bytes, backups=backups)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            # The time of writing, not record.created: a record made earlier in another thread
            # may be written later, and the file must stay in time order for the merge.
            when = stamp()
            first, *rest = text.split("\n")
            lines = [f"{when} {first}\n", *(f"{when} {'':7} | {line}\n" for line in rest)]
            self.log.write_lines("".join(lines).encode("utf-8", "replace"))
        except Exception:  # logging's contract: report, never raise into the caller
            self.handleError(record)

    def close(self) -> None:
        self.log.close()
        super().close()


#: What one plugin may put into its log per second (bytes as written, stamps included), and in
#: one burst. Stamping costs the manager per line, so a flood of empty lines (each gets a
#: stamp) would cost it a core; beyond the budget the pump stops reading for a while instead:
#: the pipe fills and the plugin's own writes block. The flooder waits, not the bot.
LOG_RATE_BYTES = 1 << 20
LOG_BURST_BYTES = 4 << 20


class IntakeBudget:
    """A leaky bucket over the bytes one plugin's output puts into its log (pure)."""

    def __init__(self, rate: float = LOG_RATE_BYTES, burst: float = LOG_BURST_BYTES) -> None:
        self.rate = rate
        self.burst = burst
        self.paused_s = 0.0  # how long intake was held back, in all
        self._level = 0.0
        self._at: float | None = None

    def spend(self, size: int, now: float) -> float:
        """Count ``size`` bytes written at ``now``; how long to pause before reading more."""
        if self._at is not None:
            self._level = max(0.0, self._level - (now - self._at) * self.rate)
        self._at = now
        self._level += size
        over = self._level - self.burst
        return over / self.rate if over > 0 else 0.0


async def pump(
    reader: asyncio.StreamReader,
    log: RotatingLog,
    tail: StreamTail | None,
    budget: IntakeBudget | None = None,
) -> None:
    """Copy a pipe into the log, one stamped line at a time, until end of file; beyond
    ``budget`` (shared by a plugin's stdout and stderr) reading pauses (backpressure)."""
    stamper = LineStamper(log)
    try:
        while True:
            chunk = await reader.read(_READ_SIZE)
            if not chunk:
                return
            written = stamper.feed(chunk)
            if tail is not None:
                tail.feed(chunk)
            if budget is not None and (pause := budget.spend(written, time.monotonic())) > 0:
                budget.paused_s += pause
                await asyncio.sleep(pause)
    finally:
        stamper.flush()
