"""``reload NAME``: replace a running plugin with its folder's new code and manifest."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rosey.api.action import PluginRequest, action
from rosey.api.results import Status, as_status

if TYPE_CHECKING:
    from rosey.manager.manager import PluginManager


class ReloadRequest(PluginRequest):
    """``{"plugin": NAME}``."""


async def run(manager: PluginManager, request: ReloadRequest) -> Status:
    """Re-read a plugin's folder (manifest and code) and switch to a new instance without
    losing a command.

    The new instance starts beside the old one, takes over once it is ready and healthy, and
    the old one finishes what it was given. If the new one fails (invalid manifest, conflict,
    crash, not ready, unhealthy) the old one keeps serving and the error is `rolled_back` with
    the reason. A plugin that is not running only takes the new manifest.
    Result: STATUS once switched.
    """
    return as_status(manager, await manager.reload_plugin(request.plugin))


ACTION = action(
    name="reload",
    request=ReloadRequest,
    run=run,
    result=Status,
    mutating=True,
    positional=("plugin",),
    order=85,
)
