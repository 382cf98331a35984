"""``update NAME SOURCE``: replace an installed plugin with a newer version, without a restart."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rosey.api.action import PluginRequest, action, field
from rosey.api.actions.install import SOURCE_MAX, YES
from rosey.manager.change_result import ChangeResult

if TYPE_CHECKING:
    from rosey.manager.manager import PluginManager


class UpdateRequest(PluginRequest):
    """``{"plugin": NAME, "source": PATH, "yes": false, "force": false}``."""

    source: str = field(min_length=1, max_length=SOURCE_MAX)
    yes: bool = field(default=False, description=YES)
    force: bool = field(
        default=False, description="allow a version that is not higher than the installed one"
    )


async def run(manager: PluginManager, request: UpdateRequest) -> ChangeResult:
    """Update a plugin from a folder, .tar.gz or .zip (an absolute path on the bot's host).

    Checked like install, and its version must be higher than the installed one ("force"
    allows the same or a lower one). Grants it newly asks for are shown (only the change)
    and need "yes" (else the error confirmation_needed). A running plugin is reloaded: the
    new version starts beside the old one and takes over once ready; if it fails, the old one
    keeps serving, the folder is put back and the error is rolled_back. The replaced version
    is kept for rollback.
    Result: {"plugin", "action", "version", "previous", "report": [lines], "status": STATUS}.
    """
    from rosey.manager.installer import Installer  # only when used: not in an idle bot

    return await Installer(manager).update(
        request.plugin, request.source, yes=request.yes, force=request.force
    )


ACTION = action(
    name="update",
    request=UpdateRequest,
    run=run,
    result=ChangeResult,
    mutating=True,
    positional=("plugin", "source"),
    metavars={"source": "SOURCE"},
    order=111,
)
