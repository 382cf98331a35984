"""``list``: every plugin and its state."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rosey.api.action import Request, action
from rosey.api.results import ListResult, all_status

if TYPE_CHECKING:
    from rosey.manager.manager import PluginManager


class ListRequest(Request):
    """No fields: an empty body (or ``{}``)."""


async def run(manager: PluginManager, request: ListRequest) -> ListResult:
    """List every plugin: state, enabled, uptime, restarts.

    Result: {"plugins": [STATUS, ...]}, sorted by name.
    """
    return {"plugins": all_status(manager)}


ACTION = action(
    name="list", request=ListRequest, run=run, result=ListResult, mutating=False, order=10
)
