"""``help [ACTION]``: what the actions are and how to call them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, TypedDict

from pydantic import Field

from rosey.api.action import Request, action

if TYPE_CHECKING:
    from rosey.manager.manager import PluginManager


class ActionHelp(TypedDict):
    name: str
    usage: str
    summary: str
    help: str
    mutating: bool
    permission: str
    fields: list[str]


class HelpResult(TypedDict):
    actions: list[ActionHelp]


class HelpRequest(Request):
    """``{"action": NAME}`` for one action, or no body for all."""

    action: Annotated[str, Field(min_length=1, max_length=64)] | None = None


async def run(manager: PluginManager, request: HelpRequest) -> HelpResult:
    """Show the actions, or the full help of one.

    Result: {"actions": [{"name", "usage", "summary", "help", "mutating", "permission",
    "fields"}, ...]}.
    """
    from rosey.api.actions import ACTIONS, get_action

    chosen = [get_action(request.action)] if request.action else ACTIONS.values()
    return {"actions": [describe(a) for a in chosen]}


def describe(found: Any) -> ActionHelp:
    return {
        "name": found.name,
        "usage": found.usage,
        "summary": found.summary,
        "help": found.help,
        "mutating": found.mutating,
        "permission": str(found.permission),
        "fields": [*found.request.model_fields],
    }


ACTION = action(
    name="help",
    request=HelpRequest,
    run=run,
    result=HelpResult,
    mutating=False,
    positional=("action",),
    metavars={"action": "ACTION"},
    order=90,
)
