"""``logs NAME [N]``: the last lines of a plugin's log, or the lines after a cursor."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from rosey.api.action import Permission, PluginRequest, action, field
from rosey.api.logfile import Cursor, read_after, tail
from rosey.api.results import LogsResult

if TYPE_CHECKING:
    from rosey.manager.manager import PluginManager

MAX_LINES = 10000


class LogsRequest(PluginRequest):
    """``{"plugin": NAME, "lines": N, "cursor": CURSOR}``; ``lines`` defaults to 50."""

    lines: int = field(default=50, ge=1, le=MAX_LINES)
    cursor: str | None = field(default=None, pattern=r"^\d{1,20}:\d{1,20}$")


async def run(manager: PluginManager, request: LogsRequest) -> LogsResult:
    """Show the last N lines (default 50) of a plugin's log (its stdout and stderr).

    With "cursor" (the "cursor" of an earlier reply) it returns up to N lines written after
    that point instead: ask again with each new cursor to follow the log. Plugin logs may
    hold private data: in chat, only admins may read them.
    Result: {"plugin", "lines": [...], "cursor"}.
    """
    manager.get_plugin_status(request.plugin)  # not_found before any path is built from it
    path = manager.ctx.log_path(request.plugin)
    if request.cursor is None:
        lines, cursor = await asyncio.to_thread(tail, path, request.lines)
    else:
        after = Cursor.parse(request.cursor)
        lines, cursor = await asyncio.to_thread(read_after, path, after, request.lines)
    return {"plugin": request.plugin, "lines": lines, "cursor": str(cursor)}


ACTION = action(
    name="logs",
    request=LogsRequest,
    run=run,
    result=LogsResult,
    mutating=False,
    permission=Permission.ADMIN,
    verb="read the logs of",
    positional=("plugin", "lines"),
    metavars={"lines": "N"},
    order=80,
)
