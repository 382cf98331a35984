"""``rosey plugin help [ACTION]``: the actions, offline; the plugins' chat commands too when a
bot can be reached.

The actions are this installation's own (``rosey.api.actions``), so no bot is needed to list
them; a running bot adds what only it knows: which chat commands its plugins answer, each with
its help (read from the plugin's source). Without a bot, a note on stderr says so; exit 0.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rosey.cli.common import EXIT_OK, EXIT_USAGE, fail
from rosey.cli.parser import cli_description
from rosey.errors import BusError, RoseyError
from rosey.protocol.text import clean, json_for_terminal

__all__ = ["plugin_help"]

#: How long to wait for a bot's list of commands: help must come quickly.
BOT_TIMEOUT = 3.0


async def plugin_help(args: argparse.Namespace) -> int:
    from rosey.api.actions import ACTIONS, get_action
    from rosey.api.actions.help import describe
    from rosey.api.render import help_lines

    prefix = "rosey plugin"
    name = getattr(args, "field_action", None)
    if name:
        try:
            found = get_action(name)
        except RoseyError as exc:
            return fail(f"{prefix} help", str(exc), EXIT_USAGE)
        one = {**describe(found), "help": cli_description(found)}
        if args.json:
            print(json_for_terminal(json.dumps({"ok": True, "result": {"actions": [one]}})))
        else:
            print("\n".join(clean(line) for line in help_lines({"actions": [one]}, prefix)))
        return EXIT_OK
    result: dict[str, Any] = {"actions": [describe(a) for a in ACTIONS.values()]}
    commands, why = await _bot_commands(args)
    if commands is not None:
        result["commands"] = commands
    if args.json:
        print(json_for_terminal(json.dumps({"ok": True, "result": result}, indent=2)))
        return EXIT_OK
    lines = help_lines(result, prefix)
    if commands is not None:
        lines += ["", "Chat commands of the running bot (!help COMMAND in chat for usage):"]
        width = max((len(c["command"]) for c in commands), default=0) + 1
        for c in commands:
            text = c["help"] or f"(plugin {c['plugin']})"
            lines.append(f"  !{c['command'].ljust(width)} {text}")
    print("\n".join(clean(line) for line in lines), flush=True)
    if why:
        print(clean(f"rosey plugin help: plugin commands not shown: {why}"), file=sys.stderr)
    return EXIT_OK


async def _bot_commands(args: argparse.Namespace) -> tuple[list[dict[str, Any]] | None, str]:
    """The running bot's chat commands, or None and why not."""
    from rosey.api.client import ManagementClient, NoBot, locate

    address = locate(args.nats_url, args.state_dir)
    if isinstance(address, NoBot):
        return None, address.reason.splitlines()[0]
    try:
        async with ManagementClient(address) as client:
            reply = await client.call("help", {}, timeout=min(args.timeout, BOT_TIMEOUT))
    except (BusError, RoseyError) as exc:
        return None, f"no answer from the bot at {address.url}: {exc}"
    result = reply.get("result") if reply.get("ok") else None
    commands = result.get("commands") if isinstance(result, dict) else None
    if not isinstance(commands, list):
        return None, "the bot does not list its commands (an older version)"
    return commands, ""
