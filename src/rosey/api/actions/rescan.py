"""``rescan``: add plugins installed in the plugin folders since the bot started."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypedDict

from rosey.api.action import Request, action
from rosey.api.results import Status, as_status

if TYPE_CHECKING:
    from rosey.manager.manager import PluginManager


class RescanRequest(Request):
    """No fields: an empty body (or ``{}``)."""


class RescanResult(TypedDict):
    added: list[Status]


async def run(manager: PluginManager, request: RescanRequest) -> RescanResult:
    """Look for plugins installed since the bot started and add them, stopped.

    Each new plugin gets its own broker identity first (the server's authorization is
    reloaded; connections and replies in flight are kept). Start them with `start`.
    Result: {"added": [STATUS, ...]} (empty when nothing is new).
    """
    names = await manager.rescan()
    return {"added": [as_status(manager, manager.get_plugin_status(name)) for name in names]}


ACTION = action(
    name="rescan", request=RescanRequest, run=run, result=RescanResult, mutating=True, order=95
)
