"""``rosey plugin install|update``: the grants confirmation, then the change, on a running bot.

The bot answers a request without ``yes`` with ``confirmation_needed`` and the grants in
words (DESIGN 2.10). Here they are shown; at a terminal the operator is asked, and a "y" sends
the request again with ``yes``; without a terminal (a script, a pipe) nothing is installed and
the command exits 1 saying to pass ``--yes``. SOURCE is made absolute here: the bot reads it
on its host, from its own working folder.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rosey.cli.common import EXIT_FAILED, EXIT_UNREACHABLE, EXIT_USAGE, fail
from rosey.errors import BusError, RoseyError
from rosey.protocol.text import clean

__all__ = ["change", "confirmation_text"]

CONFIRMATION = "confirmation_needed"


def confirmation_text(message: str) -> str:
    """The grants part of a ``confirmation_needed`` message (without its "nothing was done")."""
    return message.split("\nnothing was done:", 1)[0]


def _absolute(source: str) -> str:
    return str(Path(source).expanduser().absolute())


def _ask(prompt: str) -> bool:
    try:
        answer = input(prompt)
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


async def change(args: argparse.Namespace) -> int:
    from rosey.api.actions import ACTIONS
    from rosey.api.client import ManagementClient, NoBot, locate
    from rosey.cli.manage import _show, action_fields, request_body, unreachable

    action = ACTIONS[args.action]
    prefix = f"rosey plugin {action.name}"
    fields = action_fields(args)
    if "source" in fields:
        fields["source"] = _absolute(fields["source"])
    try:
        body = request_body(action, fields)
    except RoseyError as exc:
        return fail(prefix, f"{exc} (see: {prefix} --help)", EXIT_USAGE)

    address = locate(args.nats_url, args.state_dir)
    if isinstance(address, NoBot):
        return fail(
            "rosey",
            f"{address.reason} (install and update go through the running bot: start it "
            "with 'rosey run')",
            EXIT_UNREACHABLE,
        )
    try:
        async with ManagementClient(address) as client:
            reply = await client.call(action.name, body, timeout=args.timeout)
            error = reply.get("error") or {}
            if not reply["ok"] and error.get("code") == CONFIRMATION and not args.json:
                print(clean(confirmation_text(str(error.get("message", "")))), flush=True)
                if not sys.stdin.isatty():
                    return fail(
                        prefix,
                        "nothing was done: pass --yes to accept these grants (no terminal to "
                        "ask at)",
                        EXIT_FAILED,
                    )
                if not _ask(f"{action.name} it? [y/N] "):
                    return fail(prefix, "nothing was done (not accepted)", EXIT_FAILED)
                reply = await client.call(action.name, {**body, "yes": True}, timeout=args.timeout)
            return _show(action.name, action.mutating, reply, prefix=prefix, as_json=args.json)
    except BusError as exc:
        return unreachable(address, exc)
    except RoseyError as exc:
        return fail(prefix, f"bad answer from the bot: {exc}", EXIT_FAILED)
