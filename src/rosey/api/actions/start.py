"""``start NAME``: start a plugin and wait until it is ready (or has failed)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rosey.api.action import PluginRequest, action
from rosey.api.results import Status, as_status

if TYPE_CHECKING:
    from rosey.manager.manager import PluginManager


class StartRequest(PluginRequest):
    """``{"plugin": NAME}``."""


async def run(manager: PluginManager, request: StartRequest) -> Status:
    """Start a plugin and wait until it is ready (or has failed).

    Its dependencies must be running first, else the answer is a `dependency` error naming
    the one that is not. A disabled plugin must be enabled first (`invalid_state`).
    Result: STATUS once it has finished.
    """
    return as_status(manager, await manager.start_plugin(request.plugin))


ACTION = action(
    name="start",
    request=StartRequest,
    run=run,
    result=Status,
    mutating=True,
    positional=("plugin",),
    order=30,
)
