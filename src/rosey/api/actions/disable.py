"""``disable NAME``: stop a plugin and its dependents, and keep it from starting."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rosey.api.action import PluginRequest, action
from rosey.api.results import Status, as_status

if TYPE_CHECKING:
    from rosey.manager.manager import PluginManager


class DisableRequest(PluginRequest):
    """``{"plugin": NAME}``."""


async def run(manager: PluginManager, request: DisableRequest) -> Status:
    """Stop a plugin and its dependents, and keep it from starting.

    It stays disabled until enabled again.
    Result: STATUS once it has finished.
    """
    return as_status(manager, await manager.disable_plugin(request.plugin))


ACTION = action(
    name="disable",
    request=DisableRequest,
    run=run,
    result=Status,
    mutating=True,
    positional=("plugin",),
    order=70,
)
