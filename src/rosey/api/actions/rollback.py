"""``rollback NAME``: go back to the version an update (or rollback) replaced."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rosey.api.action import PluginRequest, action
from rosey.manager.change_result import ChangeResult

if TYPE_CHECKING:
    from rosey.manager.manager import PluginManager


class RollbackRequest(PluginRequest):
    """``{"plugin": NAME}``."""


async def run(manager: PluginManager, request: RollbackRequest) -> ChangeResult:
    """Put back the version of a plugin that the last update replaced, without a restart.

    The way an update goes (reload; the current one keeps serving if the old one fails), and
    the version rolled back from is kept in turn: a second rollback undoes the first.
    Result: {"plugin", "action", "version", "previous", "report": [lines], "status": STATUS}.
    """
    from rosey.manager.installer import Installer  # only when used: not in an idle bot

    return await Installer(manager).rollback(request.plugin)


ACTION = action(
    name="rollback",
    request=RollbackRequest,
    run=run,
    result=ChangeResult,
    mutating=True,
    positional=("plugin",),
    order=112,
)
