"""``remove NAME``: stop a plugin and take it out of the plugins folder."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rosey.api.action import PluginRequest, action, field
from rosey.manager.change_result import ChangeResult

if TYPE_CHECKING:
    from rosey.manager.manager import PluginManager


class RemoveRequest(PluginRequest):
    """``{"plugin": NAME, "purge": false}``."""

    purge: bool = field(
        default=False, description="also delete its data folder and its kept versions"
    )


async def run(manager: PluginManager, request: RemoveRequest) -> ChangeResult:
    """Stop a plugin (its dependents first, named in the reply) and remove it.

    Its folder moves out of the plugins folder into the kept versions; its data folder stays
    unless "purge", which deletes the data folder and the kept versions too. A plugin folder
    the config names directly in plugins_dir is not removed (take it out of the config).
    Result: {"plugin", "action", "version", "previous", "report": [lines], "status": null}.
    """
    from rosey.manager.installer import Installer  # only when used: not in an idle bot

    return await Installer(manager).remove(request.plugin, purge=request.purge)


ACTION = action(
    name="remove",
    request=RemoveRequest,
    run=run,
    result=ChangeResult,
    mutating=True,
    positional=("plugin",),
    order=113,
)
