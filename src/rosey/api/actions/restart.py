"""``restart NAME``: stop a plugin, then start it again and wait until it is ready."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rosey.api.action import PluginRequest, action
from rosey.api.results import Status, as_status

if TYPE_CHECKING:
    from rosey.manager.manager import PluginManager


class RestartRequest(PluginRequest):
    """``{"plugin": NAME}``."""


async def run(manager: PluginManager, request: RestartRequest) -> Status:
    """Stop a plugin, then start it again and wait until it is ready.

    The restart counter goes up by one. Its dependencies must be running (`dependency`).
    Result: STATUS once it has finished.
    """
    return as_status(manager, await manager.restart_plugin(request.plugin))


ACTION = action(
    name="restart",
    request=RestartRequest,
    run=run,
    result=Status,
    mutating=True,
    positional=("plugin",),
    order=50,
)
