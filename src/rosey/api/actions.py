"""The management actions of DESIGN 2.6, implemented once for every face.

Each action names the permission it needs (``mutating`` actions are for admins only) and its
docstring is the help text shown by chat, CLI and NATS alike.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from rosey.errors import BadRequest
from rosey.manager.manager import PluginManager
from rosey.plugins.manifest import is_valid_name
from rosey.sandbox.logs import read_log_tail

Handler = Callable[[PluginManager, Mapping[str, Any]], Awaitable[Any]]


@dataclass(frozen=True)
class Action:
    name: str
    usage: str
    help: str
    mutating: bool
    needs_plugin: bool
    run: Handler


def _plugin(params: Mapping[str, Any]) -> str:
    name = params.get("plugin")
    if not isinstance(name, str) or not name:
        raise BadRequest("field 'plugin' is required: the name of a plugin (see 'list')")
    if not is_valid_name(name):
        raise BadRequest(f"{name[:40]!r} is not a plugin name (lowercase letters, digits, '_')")
    return name


async def _list(manager: PluginManager, params: Mapping[str, Any]) -> Any:
    return {"plugins": manager.get_all_status()}


async def _status(manager: PluginManager, params: Mapping[str, Any]) -> Any:
    return manager.get_plugin_status(_plugin(params))


async def _start(manager: PluginManager, params: Mapping[str, Any]) -> Any:
    return await manager.start_plugin(_plugin(params))


async def _stop(manager: PluginManager, params: Mapping[str, Any]) -> Any:
    return await manager.stop_plugin(_plugin(params))


async def _restart(manager: PluginManager, params: Mapping[str, Any]) -> Any:
    return await manager.restart_plugin(_plugin(params))


async def _enable(manager: PluginManager, params: Mapping[str, Any]) -> Any:
    return await manager.enable_plugin(_plugin(params))


async def _disable(manager: PluginManager, params: Mapping[str, Any]) -> Any:
    return await manager.disable_plugin(_plugin(params))


async def _logs(manager: PluginManager, params: Mapping[str, Any]) -> Any:
    name = _plugin(params)
    lines = params.get("lines", 50)
    if not isinstance(lines, int) or isinstance(lines, bool) or not 0 < lines <= 10000:
        raise BadRequest("field 'lines' must be a whole number from 1 to 10000")
    manager.get_plugin_status(name)  # not_found for unknown plugins
    return {"plugin": name, "lines": read_log_tail(manager.ctx.log_path(name), lines)}


ACTIONS: dict[str, Action] = {
    a.name: a
    for a in (
        Action("list", "list", "every plugin with its state", False, False, _list),
        Action(
            "status", "status NAME", "everything about one plugin, and why", False, True, _status
        ),
        Action(
            "start", "start NAME", "start a plugin (its dependencies must run)", True, True, _start
        ),
        Action(
            "stop",
            "stop NAME",
            "stop a plugin and the plugins that depend on it",
            True,
            True,
            _stop,
        ),
        Action("restart", "restart NAME", "stop, then start a plugin", True, True, _restart),
        Action(
            "enable", "enable NAME", "allow a disabled plugin to start again", True, True, _enable
        ),
        Action(
            "disable",
            "disable NAME",
            "stop a plugin and keep it from starting",
            True,
            True,
            _disable,
        ),
        Action("logs", "logs NAME [N]", "the last N lines of a plugin's log", False, True, _logs),
    )
}


def get_action(name: str) -> Action:
    action = ACTIONS.get(name)
    if action is None:
        raise BadRequest(f"unknown action {name[:40]!r}; actions: {', '.join(ACTIONS)}")
    return action
