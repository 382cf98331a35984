"""``stop NAME``: stop a plugin, after the plugins that depend on it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rosey.api.action import PluginRequest, action
from rosey.api.results import Status, as_status

if TYPE_CHECKING:
    from rosey.manager.manager import PluginManager


class StopRequest(PluginRequest):
    """``{"plugin": NAME}``."""


async def run(manager: PluginManager, request: StopRequest) -> Status:
    """Stop a plugin, after the plugins that depend on it.

    Dependents are stopped first, in reverse dependency order; the reply comes once all
    have stopped. A stopped plugin stays stopped until started (no automatic restart).
    Result: STATUS once it has finished.
    """
    return as_status(manager, await manager.stop_plugin(request.plugin))


ACTION = action(
    name="stop",
    request=StopRequest,
    run=run,
    result=Status,
    mutating=True,
    positional=("plugin",),
    order=40,
)
