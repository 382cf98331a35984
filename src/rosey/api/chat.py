"""The chat face: ``!plugin ACTION [NAME] [N]`` from any connector."""

from __future__ import annotations

import logging
from typing import Any

from rosey.api.actions import ACTIONS, get_action
from rosey.errors import Forbidden, RoseyError
from rosey.manager.manager import PluginManager
from rosey.router.parse import ParsedCommand
from rosey.router.router import Caller

log = logging.getLogger("rosey.api")


def is_admin(caller: Caller, admins: list[str]) -> bool:
    return f"{caller.platform}:{caller.username}" in admins or caller.username in admins


def usage() -> str:
    lines = ["Usage: !plugin ACTION [NAME]"]
    for action in ACTIONS.values():
        lines.append(
            f"  !plugin {action.usage:<14} {action.help}{' (admins)' if action.mutating else ''}"
        )
    return "\n".join(lines)


def format_list(plugins: list[dict[str, object]]) -> str:
    if not plugins:
        return "no plugins installed"
    lines = []
    for p in plugins:
        enabled = "" if p["enabled"] else ", disabled"
        lines.append(
            f"{p['name']}: {p['state']}{enabled}, up {float(str(p['uptime_seconds'])):.0f}s, "
            f"restarts {p['restart_count']}"
        )
    return "\n".join(lines)


def format_status(s: dict[str, Any]) -> str:
    stats = s["stats"] if isinstance(s["stats"], dict) else {}
    lines = [
        f"{s['name']} {s['version']}: {s['state']}{'' if s['enabled'] else ' (disabled)'}",
        f"uptime {float(str(s['uptime_seconds'])):.0f}s, crashes {s['crash_count']}, "
        f"restarts {s['restart_count']}, "
        f"error rate {float(str(s['error_rate'])):.0%}",
    ]
    if s["dependencies"] or s["dependents"]:
        lines.append(
            f"depends on: {', '.join(s['dependencies']) or '-'}; "
            f"needed by: {', '.join(s['dependents']) or '-'}"
        )
    if stats.get("running"):
        lines.append(
            f"pid {stats['pid']}, cpu {stats['cpu_percent']}%, memory {stats['memory_mb']} MB"
        )
    if s["last_exit_code"] is not None:
        lines.append(f"last exit code: {s['last_exit_code']}")
    if s["next_restart_in"] is not None:
        lines.append(f"next restart in {s['next_restart_in']}s")
    if s["last_error"]:
        lines.append(f"last error: {s['last_error']}")
    return "\n".join(lines)


async def handle_plugin_command(
    manager: PluginManager, parsed: ParsedCommand, caller: Caller, admins: list[str]
) -> str:
    if not parsed.args or parsed.args[0] in ("help", "-h", "--help"):
        return usage()
    try:
        action = get_action(parsed.args[0])
        params: dict[str, object] = {}
        if action.needs_plugin:
            if len(parsed.args) < 2:
                return f"usage: !plugin {action.usage}"
            params["plugin"] = parsed.args[1]
        if action.name == "logs" and len(parsed.args) > 2:
            if not parsed.args[2].isdigit():
                return "usage: !plugin logs NAME [N] (N is a number of lines)"
            params["lines"] = int(parsed.args[2])
        if action.mutating and not is_admin(caller, admins):
            log.warning(
                "refused: %s:%s tried !plugin %s",
                caller.platform,
                caller.username,
                " ".join(parsed.args),
            )
            raise Forbidden(
                str(params.get("plugin", "")), f"{caller.platform}:{caller.username}", action.name
            )
        result = await action.run(manager, params)
    except RoseyError as exc:
        return f"!plugin {parsed.args[0]}: {exc}"
    if action.name == "list":
        return format_list(result["plugins"])
    if action.name == "logs":
        return "\n".join(result["lines"]) or f"(the log of {result['plugin']} is empty)"
    text = format_status(result)
    return text if action.name == "status" else f"{action.name}: done\n{text}"
