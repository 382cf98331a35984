"""Management results in words for people, shared by the chat and CLI faces. Pure.

Each function takes the result the action returned (DESIGN 2.6 shapes) and gives lines of
text; colour is optional and only the CLI asks for it. Text a plugin can influence (its stderr
in ``last_error``, log lines, anything shown as JSON) is cleaned of terminal escapes here
(``rosey.protocol.text``), before colour is added, so the faces print it as it comes. An
action without a renderer of its own is shown as its STATUS block if it returns one, else as
JSON, so a new action needs no change here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from rosey.errors import describe_exit
from rosey.protocol.text import clean, clean_lines, json_for_terminal

STATE_COLOURS = {
    "running": "32",  # green
    "starting": "33",  # yellow
    "stopping": "33",
    "unhealthy": "33",
    "crashed": "31",  # red
    "disabled": "31",
    "stopped": "2",  # dim
}
#: KIND last: ``plugin`` or ``connector`` (DESIGN 2.6); the columns before it keep their place.
TABLE_COLUMNS = (
    "NAME",
    "STATE",
    "ENABLED",
    "UPTIME",
    "RESTARTS",
    "CRASHES",
    "PID",
    "CPU",
    "MEM",
    "KIND",
)


def paint(text: str, code: str | None, colour: bool) -> str:
    return f"\x1b[{code}m{text}\x1b[0m" if colour and code else text


def duration(seconds: float | None) -> str:
    """``45s``, ``3m 07s``, ``2h 05m``, ``3d 04h``; ``-`` for nothing."""
    if seconds is None or seconds <= 0:
        return "-"
    whole = int(seconds)
    if whole < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours:02d}h"


def _text(value: Any) -> str:
    """A field shown on one line (a name, a state), cleaned."""
    return clean(str(value), one_line=True)


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, int | float) else "?"


def error_text(code: str, message: str) -> str:
    """An API error as every face shows it: the message, then the code."""
    return f"{message} ({code})"


def list_lines(plugins: Sequence[Mapping[str, Any]]) -> list[str]:
    """One line per plugin: ``dice: running, enabled, up 3m 07s, restarts 0``."""
    if not plugins:
        return ["no plugins installed"]
    return [
        f"{p['name']}{' (connector)' if p.get('kind') == 'connector' else ''}: {p['state']}, "
        f"{'enabled' if p['enabled'] else 'disabled'}, "
        f"up {duration(p.get('uptime_seconds'))}, restarts {p.get('restart_count', 0)}"
        for p in plugins
    ]


def list_table(plugins: Sequence[Mapping[str, Any]], *, colour: bool = False) -> list[str]:
    """The ``list`` result as an aligned table (state coloured when ``colour``)."""
    rows: list[tuple[list[str], str | None]] = []
    for p in plugins:
        stats = p.get("stats") or {}
        running = bool(stats.get("running"))
        rows.append(
            (
                [
                    _text(p["name"]),
                    _text(p["state"]),
                    "yes" if p["enabled"] else "no",
                    duration(p.get("uptime_seconds")),
                    str(p.get("restart_count", 0)),
                    str(p.get("crash_count", 0)),
                    str(stats.get("pid")) if running else "-",
                    f"{_number(stats.get('cpu_percent'))}%" if running else "-",
                    f"{_number(stats.get('memory_mb'))} MB" if running else "-",
                    _text(p.get("kind") or "plugin"),
                ],
                STATE_COLOURS.get(str(p["state"])),
            )
        )
    widths = [len(c) for c in TABLE_COLUMNS]
    for cells, _ in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, cells, strict=True)]

    def line(cells: Sequence[str], state_code: str | None) -> str:
        padded = [c.ljust(w) for c, w in zip(cells, widths, strict=True)]
        padded[1] = paint(padded[1], state_code, colour)
        return "  ".join(padded).rstrip()

    header = paint(
        "  ".join(c.ljust(w) for c, w in zip(TABLE_COLUMNS, widths, strict=True)), "1", colour
    )
    return [header.rstrip(), *(line(cells, code) for cells, code in rows)]


def status_lines(s: Mapping[str, Any], *, colour: bool = False) -> list[str]:
    """STATUS as a readable block: state and why first, then numbers, then the last error."""
    state = str(s["state"])
    flags = ["enabled" if s["enabled"] else "disabled"]
    if s.get("critical"):
        flags.append("critical")
    lines = [
        f"{_text(s['name'])} {_text(s.get('version', ''))}: "
        f"{paint(state, STATE_COLOURS.get(state), colour)} ({', '.join(flags)})"
    ]
    error = clean(str(s.get("last_error") or "")).strip()
    error_lines = error.splitlines()
    why = state not in ("running", "starting", "stopping") and bool(error_lines)
    if why:
        lines.append(f"  why: {error_lines[0]}")
    lines.append(
        f"  uptime {duration(s.get('uptime_seconds'))}, crashes {s.get('crash_count', 0)}, "
        f"restarts {s.get('restart_count', 0)}, error rate {_rate(s.get('error_rate'))}"
    )
    lines.append(
        f"  depends on: {', '.join(s.get('dependencies') or []) or '-'}; "
        f"needed by: {', '.join(s.get('dependents') or []) or '-'}"
    )
    lines.extend(_resource_lines(s))
    if s.get("last_exit_code") is not None:
        lines.append(f"  last exit: {describe_exit(int(s['last_exit_code']))}")
    if s.get("next_restart_in") is not None:
        lines.append(f"  next restart in {duration(float(s['next_restart_in'])) or '0s'}")
    if error_lines and not (why and len(error_lines) == 1):  # else "why" said it all
        lines.append("  last error:")
        lines.extend(f"    | {_unquoted(line)}" for line in error_lines[-10:])
    return lines


#: How an error's quoted lines are marked (``rosey.errors``: "last stderr lines:\n  | ...").
_QUOTED = "  | "


def _unquoted(line: str) -> str:
    """An error line without its own quote mark, which the status block draws once: a
    traceback in stderr shows as ``| Traceback``, ``|   File ...``, never ``|   |``."""
    if line.startswith(_QUOTED):
        return line[len(_QUOTED) :]
    return line.removeprefix(_QUOTED.rstrip())


def _rate(value: Any) -> str:
    return f"{value:.1%}" if isinstance(value, int | float) else "?"


def _resource_lines(s: Mapping[str, Any]) -> list[str]:
    stats = s.get("stats") or {}
    limits = s.get("limits") or {}
    lines: list[str] = []
    if stats.get("running"):
        cpu = f"cpu {_number(stats.get('cpu_percent'))}%"
        if "cpu_percent" in limits:
            cpu += f" of {limits['cpu_percent']}%"
        memory = f"memory {_number(stats.get('memory_mb'))}"
        memory += f" of {limits['memory_mb']} MB" if "memory_mb" in limits else " MB"
        tree = s.get("resources") or {}
        extra = (
            f", {tree['processes']} process(es), {tree['threads']} thread(s), "
            f"{tree['open_files']} open file(s)"
            if tree
            else ""
        )
        how = f" ({s['started']})" if s.get("started") else ""
        lines.append(f"  pid {stats.get('pid')}{how}: {cpu}, {memory}{extra}")
    else:
        lines.append("  not running")
    parts = []
    if limits:
        parts.append(
            f"limits: memory {limits.get('memory_mb')} MB, cpu {limits.get('cpu_percent')}%, "
            f"{limits.get('max_processes')} processes, {limits.get('open_files')} open files"
        )
    layers = s.get("layers")
    if layers:
        parts.append(f"enforced by {', '.join(map(str, layers))}")
    if parts:
        lines.append("  " + "; ".join(parts))
    lines.extend(f"  bounded: {note}" for note in s.get("bounds") or [])
    permissions = ", ".join(s.get("permissions") or []) or "none"
    broker = "enforced by the broker" if s.get("enforced") else "not enforced by the broker"
    violations = int(s.get("violations") or 0)
    refused = f"; {violations} violation(s) refused" if violations else ""
    lines.append(f"  permissions: {permissions} ({broker}{refused})")
    return lines


def done_lines(action: str, s: Mapping[str, Any], prefix: str) -> list[str]:
    """After a mutating action: what became of the plugin, in one line."""
    state = str(s["state"])
    text = f"{action} {s['name']}: done, it is {state}"
    stats = s.get("stats") or {}
    if stats.get("running"):
        text += f" (pid {stats.get('pid')})"
    if action in ("stop", "disable") and s.get("dependents"):
        text += f"; its dependents were stopped first: {', '.join(s['dependents'])}"
    if action == "enable" and state == "stopped":
        text += f"; start it with: {prefix} start {s['name']}"
    return [text]


def help_lines(result: Mapping[str, Any], prefix: str) -> list[str]:
    """The ``help`` result: a usage list, or one action's full help."""
    actions = list(result.get("actions") or [])
    if len(actions) == 1:
        a = actions[0]
        return [f"usage: {prefix} {a['usage']}", *str(a["help"]).splitlines()]
    width = max((len(a["usage"]) for a in actions), default=0)
    lines = [f"usage: {prefix} ACTION [NAME] ... ({prefix} help ACTION for more)"]
    for a in actions:
        admin = " (admins)" if a["permission"] == "admin" else ""
        lines.append(f"  {a['usage'].ljust(width)}  {a['summary']}{admin}")
    return lines


def result_lines(action: str, mutating: bool, result: Any, *, prefix: str) -> list[str]:
    """Any action's result in words: the chat reply and the CLI's human output."""
    if action == "list":
        return list_lines(result["plugins"])
    if action == "logs":
        return clean_lines(list(result["lines"])) or [
            f"(nothing in the log of {_text(result['plugin'])} yet)"
        ]
    if action == "help":
        return help_lines(result, prefix)
    if action == "rescan":
        added = result["added"]
        if not added:
            return ["rescan: no new plugins"]
        return [f"rescan: added {len(added)} plugin(s), stopped until started:", *list_lines(added)]
    if isinstance(result, Mapping) and isinstance(result.get("report"), list):
        return clean_lines([str(line) for line in result["report"]])  # install, update, ...
    if isinstance(result, Mapping) and "state" in result and "name" in result:
        return done_lines(action, result, prefix) if mutating else status_lines(result)
    return json_for_terminal(json.dumps(result, indent=2, ensure_ascii=False)).splitlines()
