"""``rosey plugin ACTION``: one management action on a running bot, over NATS (DESIGN 2.6)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from rosey.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    colour,
    fail,
    pause,
    stop_on_signals,
)
from rosey.cli.logs import FOLLOW_INTERVAL
from rosey.cli.parser import takes_names
from rosey.errors import BusError, RoseyError
from rosey.protocol.text import clean, clean_lines, json_for_terminal

if TYPE_CHECKING:
    from rosey.api.action import Action
    from rosey.api.client import BotAddress, ManagementClient

__all__ = ["action_fields", "manage", "request_body", "unreachable"]


async def manage(args: argparse.Namespace) -> int:
    from rosey.api.actions import ACTIONS
    from rosey.api.client import ManagementClient, NoBot, locate

    action = ACTIONS[args.action]
    if takes_names(action):
        from rosey.cli.names import manage_names

        return await manage_names(args, action)
    if action.name == "help":
        from rosey.cli.help import plugin_help

        return await plugin_help(args)
    prefix = f"rosey plugin {action.name}"
    try:
        body = request_body(action, action_fields(args))
    except RoseyError as exc:
        return fail(prefix, f"{exc} (see: {prefix} --help)", EXIT_USAGE)

    address = locate(args.nats_url, args.state_dir)
    if isinstance(address, NoBot):
        return fail("rosey", address.reason, EXIT_UNREACHABLE)
    try:
        async with ManagementClient(address) as client:
            reply = await client.call(action.name, body, timeout=args.timeout)
            follow = bool(getattr(args, "follow", False))
            code = _show(
                action.name,
                action.mutating,
                reply,
                prefix=prefix,
                as_json=args.json,
                one_line=follow,
            )
            if code == EXIT_OK and follow:
                return await _follow(client, body, reply["result"]["cursor"], args.json)
            return code
    except BusError as exc:
        return unreachable(address, exc)
    except RoseyError as exc:
        return fail(prefix, f"bad answer from the bot: {exc}", EXIT_FAILED)


def action_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The action's fields as the command line gave them (``field_*``; those not given left
    out, so the request model's defaults apply)."""
    return {
        key.removeprefix("field_"): value
        for key, value in vars(args).items()
        if key.startswith("field_") and value is not None
    }


def request_body(action: Action[Any], fields: dict[str, Any]) -> dict[str, Any]:
    """``fields`` checked by the action's request model, as sent (unset fields left out).

    Raises ``RoseyError`` naming the field that is wrong and what is allowed.
    """
    body: dict[str, Any] = action.parse(fields, strict=False).model_dump(exclude_unset=True)
    return body


def unreachable(address: BotAddress, exc: BusError) -> int:
    """Say that no bot answered at ``address`` (and where that address came from): exit 3."""
    where = f"{address.url} (from {address.source})" if address.source else address.url
    return fail("rosey", f"no running bot could be reached at {where}: {exc}", EXIT_UNREACHABLE)


def _show(
    action: str,
    mutating: bool,
    reply: dict[str, Any],
    *,
    prefix: str,
    as_json: bool,
    one_line: bool = False,
) -> int:
    """Print a reply (human, or JSON: indented, or on one line with ``one_line``); its exit code."""
    from rosey.api.render import error_text, list_table, result_lines, status_lines

    if as_json:
        text = json.dumps(reply, indent=None if one_line else 2, ensure_ascii=False)
        print(json_for_terminal(text), flush=True)
    elif not reply["ok"]:
        error = reply.get("error") or {}
        text = error_text(str(error.get("code", "internal")), str(error.get("message", "failed")))
        print(clean(f"{prefix}: {text}"), file=sys.stderr)
    else:
        result = reply["result"]
        if action == "list":
            lines = list_table(result["plugins"], colour=colour())
        elif action == "status":
            lines = status_lines(result, colour=colour())
        elif action == "logs":
            lines = clean_lines(list(result["lines"]))
        else:
            lines = clean_lines(result_lines(action, mutating, result, prefix="rosey plugin"))
        print("\n".join(lines), flush=True)
    return EXIT_OK if reply["ok"] else EXIT_FAILED


async def _follow(
    client: ManagementClient, body: dict[str, Any], cursor: str, as_json: bool
) -> int:
    """``logs -f``: ask for what came after the cursor, twice a second, until Ctrl-C / SIGTERM."""
    with stop_on_signals() as stop:
        while not stop.is_set():
            reply = await client.call("logs", {**body, "lines": 1000, "cursor": cursor}, timeout=10)
            if not reply["ok"]:
                return _show(
                    "logs", False, reply, prefix="rosey plugin logs", as_json=as_json, one_line=True
                )
            result = reply["result"]
            cursor = result["cursor"]
            if result["lines"]:
                if as_json:
                    print(json_for_terminal(json.dumps(reply, ensure_ascii=False)), flush=True)
                else:
                    print("\n".join(clean_lines(list(result["lines"]))), flush=True)
            if len(result["lines"]) < 1000:
                await pause(stop, FOLLOW_INTERVAL)
    return EXIT_OK
