"""One log stream: the core's log and every plugin's, merged in time order (``rosey logs``).

The files are read directly from ``<state-dir>/logs/``, so this works with the bot running or
stopped. Each line there starts with a UTC stamp written by the bot (``rosey.sandbox.logs``):
the core's records, what a plugin wrote (``STAMP | TEXT``) and the manager's marker at each
start, stop and crash of a plugin (``STAMP ──── dice crashed (signal 9) ────``). The source
of a line is the file it came from, never its text, and only a line the manager wrote can be a
marker: a plugin printing a fake marker, stamp or core line shows up as its own output.

Reading reuses ``rosey.api.logfile`` (bounded windows, cursors that survive rotation, control
characters replaced); this module adds the parsing, the merge and the layout.
"""

from __future__ import annotations

import heapq
import re
from dataclasses import dataclass
from pathlib import Path

from rosey.api.logfile import Cursor, read_after, tail
from rosey.sandbox.logs import CORE_LOG_NAME, MARKER_BAR, OUTPUT_TAG

#: How the core's lines are labelled: upper case, so no plugin (``^[a-z][a-z0-9_]*$``) can be.
CORE = "ROSEY"
_PLUGIN_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_STAMPED = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) (.*)$", re.DOTALL)
#: Lines asked of each file per read while following.
FOLLOW_BATCH = 1000


@dataclass(frozen=True)
class LogLine:
    """One line of the stream. ``when`` is the bot's UTC stamp ("" if the line has none)."""

    when: str
    source: str
    text: str
    marker: bool = False


def parse(source: str, raw: str, previous: str = "") -> LogLine:
    """One line of ``source``'s file. A line without a stamp (written before stamps existed,
    or a cut piece) takes the previous line's time and is never a marker."""
    match = _STAMPED.match(raw)
    if match is None:
        return LogLine(previous, source, raw)
    when, rest = match.groups()
    if source == CORE:
        return LogLine(when, source, rest)
    if rest.startswith(OUTPUT_TAG):
        return LogLine(when, source, rest[len(OUTPUT_TAG) :])
    if rest.startswith(MARKER_BAR + " ") and rest.endswith(" " + MARKER_BAR):
        return LogLine(when, source, rest, marker=True)
    return LogLine(when, source, rest)


def parse_all(source: str, raws: list[str], previous: str = "") -> list[LogLine]:
    out: list[LogLine] = []
    for raw in raws:
        line = parse(source, raw, previous)
        previous = line.when
        out.append(line)
    return out


def merge(streams: list[list[LogLine]]) -> list[LogLine]:
    """Time order across sources; each source keeps its own order (even if its clock jumped)."""
    return list(heapq.merge(*streams, key=lambda line: line.when))


def sources(log_dir: Path, names: list[str] | None, *, core: bool) -> dict[str, Path]:
    """Label → current log file: the named plugins (all found when ``names`` is None) and the
    core's log if ``core``. Every file is listed, even one not written yet (a follower waits)."""
    found: dict[str, Path] = {}
    if core:
        found[CORE] = log_dir / CORE_LOG_NAME
    if names is None:
        for path in sorted(log_dir.glob("*.log")):
            if _PLUGIN_NAME.match(path.stem):
                found[path.stem] = path
    else:
        for name in names:
            found[name] = log_dir / f"{name}.log"
    return found


def missing(log_dir: Path, names: list[str]) -> list[str]:
    """The names that have no log in ``log_dir`` (never ran there, or a typo)."""
    return [n for n in names if not _PLUGIN_NAME.match(n) or not (log_dir / f"{n}.log").exists()]


def last_lines(files: dict[str, Path], lines: int) -> tuple[list[LogLine], dict[str, Cursor]]:
    """The last ``lines`` lines of the merged stream, and a cursor per file after them."""
    streams: list[list[LogLine]] = []
    cursors: dict[str, Cursor] = {}
    for source, path in files.items():
        # At least one line: the cursor after it is the end of the file (-n 0 -f: only new ones).
        raws, cursors[source] = tail(path, max(lines, 1))
        streams.append(parse_all(source, raws))
    merged = merge(streams)
    return merged[-lines:] if lines else [], cursors


def read_new(
    files: dict[str, Path], cursors: dict[str, Cursor]
) -> tuple[list[LogLine], dict[str, Cursor]]:
    """Everything written after ``cursors`` (a file without one is read from its start)."""
    streams: list[list[LogLine]] = []
    after: dict[str, Cursor] = {}
    for source, path in files.items():
        cursor = cursors.get(source, Cursor(0, 0))
        collected: list[str] = []
        while True:
            raws, cursor = read_after(path, cursor, FOLLOW_BATCH)
            collected.extend(raws)
            if len(raws) < FOLLOW_BATCH:
                break
        after[source] = cursor
        streams.append(parse_all(source, collected))
    return merge(streams), after


def layout(line: LogLine, width: int) -> str:
    """``2026-11-27 14:43:03.123 dice  | text``; a marker without the bar after the source."""
    when = line.when.replace("T", " ").removesuffix("Z") if line.when else " " * 23
    separator = " " if line.marker else " | "
    return f"{when} {line.source:<{width}}{separator}{line.text}"


def label_width(files: dict[str, Path]) -> int:
    return max((len(name) for name in files), default=len(CORE))
