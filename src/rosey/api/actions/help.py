"""``help [ACTION]``: what the actions are and how to call them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NotRequired, TypedDict

from rosey.api.action import Request, action, field

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


class CommandHelp(TypedDict):
    command: str
    plugin: str
    help: str
    usage: str


class HelpResult(TypedDict):
    actions: list[ActionHelp]
    #: The plugins' chat commands (all actions asked for only): help read from their source.
    commands: NotRequired[list[CommandHelp]]


class HelpRequest(Request):
    """``{"action": NAME}`` for one action, or no body for all."""

    action: str | None = field(default=None, min_length=1, max_length=64)


async def run(manager: PluginManager, request: HelpRequest) -> HelpResult:
    """Show the actions, or the full help of one.

    Without an action, the plugins' chat commands too, each with its help and usage.
    Result: {"actions": [{"name", "usage", "summary", "help", "mutating", "permission",
    "fields"}, ...], "commands": [{"command", "plugin", "help", "usage"}, ...]}.
    """
    from rosey.api.actions import ACTIONS, get_action

    if request.action:
        return {"actions": [describe(get_action(request.action))]}
    commands: list[CommandHelp] = []
    for command, plugin in sorted(manager.commands().items()):
        text, usage = manager.command_help(command) or ("", "")
        commands.append({"command": command, "plugin": plugin, "help": text, "usage": usage})
    return {"actions": [describe(a) for a in ACTIONS.values()], "commands": commands}


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
