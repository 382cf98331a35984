"""Per-plugin log files with a size cap and rotation, fed from the plugin's pipes.

The manager reads the plugin's stdout and stderr continuously, so a plugin printing forever
never blocks on a full pipe, and writes them here: ``<name>.log`` plus ``backups`` rotated
files of at most ``max_bytes`` each, so the disk use of one plugin is bounded by
``max_bytes × (backups + 1)``. The last stderr lines are kept in memory for status.
"""

from __future__ import annotations

import asyncio
import collections
import os
from pathlib import Path

DEFAULT_MAX_BYTES = 1024 * 1024
DEFAULT_BACKUPS = 2
TAIL_LINES = 20
_READ_SIZE = 64 * 1024


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
    """The last lines of a stream, for ``last_error``."""

    def __init__(self, lines: int = TAIL_LINES) -> None:
        self._lines: collections.deque[str] = collections.deque(maxlen=lines)
        self._partial = b""

    def feed(self, data: bytes) -> None:
        data = self._partial + data
        *complete, self._partial = data.split(b"\n")
        # Only the last maxlen lines can survive: skip decoding the rest of a flood.
        for raw in complete[-(self._lines.maxlen or 1) :]:
            self._lines.append(raw.decode("utf-8", "replace").rstrip("\r")[:500])
        if len(self._partial) > 4096:
            self._partial = self._partial[-4096:]

    def lines(self, n: int | None = None) -> list[str]:
        items = list(self._lines)
        if self._partial:
            items.append(self._partial.decode("utf-8", "replace")[:500])
        return items if n is None else items[-n:]


async def pump(reader: asyncio.StreamReader, log: RotatingLog, tail: StreamTail | None) -> None:
    """Copy a pipe into the log until end of file."""
    while True:
        chunk = await reader.read(_READ_SIZE)
        if not chunk:
            return
        log.write(chunk)
        if tail is not None:
            tail.feed(chunk)
