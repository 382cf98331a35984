"""``status NAME``: everything about one plugin, and why it is in its state."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rosey.api.action import PluginRequest, action
from rosey.api.results import Status, plugin_status

if TYPE_CHECKING:
    from rosey.manager.manager import PluginManager


class StatusRequest(PluginRequest):
    """``{"plugin": NAME}``."""


async def run(manager: PluginManager, request: StatusRequest) -> Status:
    """Show everything about one plugin, and why it is in its state.

    State and why, uptime, crashes and restarts, error rate, dependencies and dependents, last
    exit code and error lines, resources against limits, next restart, enforcement layers.
    Result: STATUS.
    """
    return plugin_status(manager, request.plugin)


ACTION = action(
    name="status",
    request=StatusRequest,
    run=run,
    result=Status,
    mutating=False,
    positional=("plugin",),
    order=20,
)
