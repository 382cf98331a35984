"""Reading a plugin's log for the ``logs`` action: the last lines, or the lines after a cursor.

The manager writes ``<name>.log`` and rotates it to ``<name>.log.1``, ``.2``, ... (the file
keeps its inode when renamed). A cursor is ``"INODE:OFFSET"``: the file and the byte just
after the last line handed out, so a follower (``rosey plugin logs -f``) asks only for what is
new, and keeps its place across a rotation. Only complete lines are handed out; a line still
being written comes with the next read.

Replies stay small whatever a plugin writes: at most ``WINDOW`` bytes are read per call, lines
are cut at ``MAX_LINE`` characters, and control characters (terminal escapes included) are
replaced, so a log can neither overflow a NATS message nor drive the operator's terminal.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from rosey.errors import BadRequest

WINDOW = 128 * 1024
MAX_LINE = 1000
BACKUPS_SEARCHED = 5
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_CURSOR = re.compile(r"^(\d{1,20}):(\d{1,20})$")


@dataclass(frozen=True)
class Cursor:
    inode: int
    offset: int

    def __str__(self) -> str:
        return f"{self.inode}:{self.offset}"

    @classmethod
    def parse(cls, text: str) -> Cursor:
        match = _CURSOR.match(text)
        if match is None:
            raise BadRequest(
                f"field 'cursor': {text[:40]!r} is not a cursor; pass back the 'cursor' of an "
                "earlier logs reply (INODE:OFFSET)"
            )
        return cls(int(match.group(1)), int(match.group(2)))


def clean(raw: bytes) -> str:
    """One log line as safe text: decoded, control characters replaced, length capped."""
    text = _CONTROL.sub("\ufffd", raw.decode("utf-8", "replace").rstrip("\r"))
    return text if len(text) <= MAX_LINE else text[: MAX_LINE - 1] + "…"


def _files(path: Path) -> list[Path]:
    """The log files, oldest first: ``.N`` ... ``.1``, then the current one."""
    backups = [path.with_name(f"{path.name}.{i}") for i in range(BACKUPS_SEARCHED, 0, -1)]
    return [*backups, path]


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except OSError:
        return None


def _read(path: Path, start: int, end: int) -> bytes:
    with path.open("rb") as fh:
        fh.seek(start)
        return fh.read(max(0, end - start))


def tail(path: Path, lines: int) -> tuple[list[str], Cursor]:
    """The last ``lines`` complete lines (at most ``WINDOW`` bytes read) and a cursor after them."""
    collected: list[bytes] = []
    cursor: Cursor | None = None
    budget = WINDOW
    for file in reversed(_files(path)):
        if len(collected) >= lines or budget <= 0:
            break
        try:
            with file.open("rb") as fh:
                info = os.fstat(fh.fileno())
                size = info.st_size
                start = max(0, size - budget)
                fh.seek(start)
                data = fh.read(size - start)
        except OSError:
            continue
        complete = data[: data.rfind(b"\n") + 1]
        if cursor is None:
            cursor = Cursor(info.st_ino, start + len(complete))
        parts = complete.split(b"\n")[:-1]
        if start > 0 and parts:
            parts = parts[1:]  # the window began inside a line
        budget -= len(data)
        collected = parts[-(lines - len(collected)) :] + collected
    return [clean(line) for line in collected[-lines:]], cursor or Cursor(0, 0)


def read_after(path: Path, cursor: Cursor, lines: int) -> tuple[list[str], Cursor]:
    """Up to ``lines`` complete lines written after ``cursor``, and the cursor after them.

    A cursor into a file that has since been rotated is followed there, then into the newer
    files. A cursor matching no file (inode 0: there was no log yet) starts the current file.
    A rotated file never grows, so its unterminated last line is handed out as it is.
    """
    files = _files(path)
    inodes = [_inode(f) for f in files]
    matched = bool(cursor.inode) and cursor.inode in inodes
    index, offset = (inodes.index(cursor.inode), cursor.offset) if matched else (len(files) - 1, 0)
    position = cursor if matched else Cursor(inodes[-1] or 0, 0)
    out: list[bytes] = []
    budget = WINDOW
    for number, (file, inode) in enumerate(zip(files, inodes, strict=True)):
        if number < index or inode is None:
            continue
        current = number == len(files) - 1
        try:
            size = file.stat().st_size
        except OSError:
            continue
        if offset > size:  # truncated under us: start this file over
            offset = 0
        data = _read(file, offset, min(size, offset + budget))
        finished = not current and offset + len(data) == size
        overlong = len(data) >= budget and b"\n" not in data  # hand it out cut, never stall
        if not finished and not overlong:  # keep a line still being written for the next read
            data = data[: data.rfind(b"\n") + 1]
        parts = data.split(b"\n")
        if not parts[-1]:
            parts.pop()
        parts = parts[: lines - len(out)]
        used = min(len(data), sum(len(p) + 1 for p in parts))
        out.extend(parts)
        budget -= used
        position = Cursor(inode, offset + used)
        if len(out) >= lines or budget <= 0 or offset + used < size:
            break
        offset = 0
    return [clean(line) for line in out], position
