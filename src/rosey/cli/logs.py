"""``rosey logs`` / ``rosey plugin logs --all``: the merged log stream, read from the files."""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path
from typing import TYPE_CHECKING

from rosey.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    colour,
    fail,
    pause,
    stop_on_signals,
)
from rosey.protocol.text import clean_lines

if TYPE_CHECKING:
    from rosey.api.logstream import LogLine

__all__ = ["FOLLOW_INTERVAL", "logs"]

FOLLOW_INTERVAL = 0.5


def logs(args: argparse.Namespace) -> int:
    """``rosey logs`` / ``rosey plugin logs --all``: the merged stream, read from the files."""
    from rosey.api.client import find_state_dir
    from rosey.api.logstream import missing

    if args.command == "logs":
        names: list[str] = list(args.names)
        lines, core = args.lines, args.core or not args.names
    else:
        names = [args.field_plugin] if args.field_plugin else []
        lines, core = int(args.field_lines or 50), True
    if lines < 0:
        return fail("rosey logs", "-n must be 0 or more", EXIT_USAGE)
    state_dir = args.state_dir or find_state_dir()  # as the CLI finds the bot
    log_dir = state_dir / "logs"
    if not log_dir.is_dir():
        return fail(
            "rosey logs", f"no logs in {log_dir} (pass --state-dir of the bot)", EXIT_FAILED
        )
    if not os.access(log_dir, os.R_OK | os.X_OK):
        return fail("rosey logs", f"cannot read {log_dir}: run this as the bot's user", EXIT_FAILED)
    unknown = missing(log_dir, names)
    if unknown:
        have = sorted(p.stem for p in log_dir.glob("*.log") if p.stem.isidentifier())
        return fail(
            "rosey logs",
            f"no log for {', '.join(unknown)} in {log_dir}; logs there: {', '.join(have)}",
            EXIT_FAILED,
        )
    try:
        return asyncio.run(_stream(log_dir, names or None, lines, core, bool(args.follow)))
    except KeyboardInterrupt:
        return EXIT_OK


async def _stream(
    log_dir: Path, names: list[str] | None, lines: int, core: bool, follow: bool
) -> int:
    """Print the last ``lines`` of the merged stream; with ``follow``, new lines as they come
    (plugins that appear meanwhile included) until Ctrl-C / SIGTERM."""
    from rosey.api.logstream import label_width, last_lines, read_new, sources

    files = sources(log_dir, names, core=core)
    shown, cursors = await asyncio.to_thread(last_lines, files, lines)
    width = label_width(files)
    _print_lines(shown, width)
    if not follow:
        return EXIT_OK
    with stop_on_signals() as stop:
        while not stop.is_set():
            await pause(stop, FOLLOW_INTERVAL)
            files = sources(log_dir, names, core=core)
            new, cursors = await asyncio.to_thread(read_new, files, cursors)
            width = max(width, label_width(files))
            _print_lines(new, width)
    return EXIT_OK


def _print_lines(lines: list[LogLine], width: int) -> None:
    """Each line cleaned of what the plugin put in it; markers in bold on a colour terminal."""
    from rosey.api.logstream import layout
    from rosey.api.render import paint

    coloured = colour()
    out = [
        paint(text, "1" if line.marker else None, coloured)
        for line in lines
        for text in clean_lines([layout(line, width)])
    ]
    if out:
        print("\n".join(out), flush=True)
