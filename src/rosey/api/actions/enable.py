"""``enable NAME``: allow a disabled plugin to start again (does not start it)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rosey.api.action import PluginRequest, action
from rosey.api.results import Status, as_status

if TYPE_CHECKING:
    from rosey.manager.manager import PluginManager


class EnableRequest(PluginRequest):
    """``{"plugin": NAME}``."""


async def run(manager: PluginManager, request: EnableRequest) -> Status:
    """Allow a disabled plugin to start again (does not start it).

    Clears the crash history that disabled it; use start afterwards.
    Result: STATUS once it has finished.
    """
    return as_status(manager, await manager.enable_plugin(request.plugin))


ACTION = action(
    name="enable",
    request=EnableRequest,
    run=run,
    result=Status,
    mutating=True,
    positional=("plugin",),
    order=60,
)
