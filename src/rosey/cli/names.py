"""``rosey plugin stop dice quote``, ``restart all``, ``status``: one action, several plugins.

The management API takes one plugin a request (DESIGN 2.6); the CLI sends one request per name,
in the order given, and stops at nothing: every name gets its answer. ``all`` (and ``status``
with no name) means every plugin the bot knows, in the order ``list`` gives them; ``stop`` and
``disable`` go the other way round, so dependents go before what they depend on. The exit code
is 1 if the action failed for any of them.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from rosey.api.action import Action
from rosey.cli.common import EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE, fail
from rosey.cli.parser import ALL
from rosey.errors import BusError, RoseyError
from rosey.protocol.text import json_for_terminal

__all__ = ["manage_names"]

#: Actions that go through ``all`` in reverse order (dependents first).
REVERSED = frozenset({"stop", "disable"})


async def manage_names(args: argparse.Namespace, action: Action[Any]) -> int:
    from rosey.api.client import ManagementClient, NoBot, locate
    from rosey.cli.manage import _show, unreachable

    prefix = f"rosey plugin {action.name}"
    names: list[str] = list(args.names)
    every = not names or ALL in names
    if not names and action.name != "status":
        return fail(prefix, f"which plugin? give NAME ... or '{ALL}' (see: {prefix} --help)", 2)
    if every and names not in ([], [ALL]):
        return fail(prefix, f"'{ALL}' cannot be mixed with names", EXIT_USAGE)
    for name in names if not every else []:
        try:
            action.parse({"plugin": name}, strict=False)
        except RoseyError as exc:
            return fail(prefix, f"{exc} (see: {prefix} --help)", EXIT_USAGE)

    address = locate(args.nats_url, args.state_dir)
    if isinstance(address, NoBot):
        return fail("rosey", address.reason, EXIT_UNREACHABLE)
    replies: list[dict[str, Any]] = []
    code = EXIT_OK
    try:
        async with ManagementClient(address) as client:
            if every:
                listed = await client.call("list", {}, timeout=args.timeout)
                if not listed.get("ok"):
                    return _show("list", False, listed, prefix=prefix, as_json=args.json)
                names = [str(p["name"]) for p in listed["result"]["plugins"]]
                if action.name in REVERSED:
                    names.reverse()
            for index, name in enumerate(names):
                reply = await client.call(action.name, {"plugin": name}, timeout=args.timeout)
                replies.append(reply)
                if args.json:
                    code = max(code, EXIT_OK if reply["ok"] else EXIT_FAILED)
                    continue
                if index and action.name == "status":
                    print()
                shown = _show(action.name, action.mutating, reply, prefix=prefix, as_json=False)
                code = max(code, shown)
    except BusError as exc:
        return unreachable(address, exc)
    except RoseyError as exc:
        return fail(prefix, f"bad answer from the bot: {exc}", EXIT_FAILED)
    if args.json:
        # One name: its envelope, as always; several: a list of them, in order.
        shown_json: Any = replies[0] if len(names) == 1 and not every else replies
        text = json.dumps(shown_json, indent=2, ensure_ascii=False)
        print(json_for_terminal(text), flush=True)
    elif not names:
        print("no plugins")
    return code
