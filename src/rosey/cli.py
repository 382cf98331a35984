"""``rosey``: run the bot, manage its plugins, validate manifests (DESIGN 2.1).

Exit codes: 0 done; 1 the action failed; 2 usage; 3 no running bot could be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rosey.errors import BrokerError, BusError, ConfigError, RoseyError

if TYPE_CHECKING:
    from rosey.api.client import ManagementClient

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3
#: Request fields the CLI takes as options rather than positional words, with their flags.
OPTION_FLAGS = {"lines": ("-n", "--lines")}
#: Request fields the CLI fills in itself (``logs -f`` passes the cursor along).
HIDDEN_FIELDS = frozenset({"cursor"})
FOLLOW_INTERVAL = 0.5


def _parser() -> argparse.ArgumentParser:
    from rosey.api.actions import ACTIONS

    parser = argparse.ArgumentParser(prog="rosey", description="Rosey chat bot and plugin manager")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the bot")
    run.add_argument("--config", type=Path, help="bot config file (default config/plugins.yaml)")
    run.add_argument("--plugins-dir", type=Path, action="append", help="plugin folder (repeatable)")
    run.add_argument("--state-dir", type=Path, help="state folder (default .rosey)")
    run.add_argument("--nats-url", help="use this NATS server instead of an embedded one")
    run.add_argument("--no-console", action="store_true", help="do not read chat from the terminal")
    run.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])

    plugin = sub.add_parser(
        "plugin",
        help="manage the plugins of a running bot, or validate manifests",
        description="Exit codes: 0 done; 1 the action failed (unknown plugin, refused, "
        "dependency); 2 usage; 3 no running bot could be reached.",
    )
    actions = plugin.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action in ACTIONS.values():
        p = actions.add_parser(
            action.name,
            help=action.summary,
            description=action.help,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        for field, info in action.request.model_fields.items():
            if field in HIDDEN_FIELDS:
                continue
            metavar = action.metavars.get(field, field.upper())
            if field in OPTION_FLAGS or field not in action.positional:
                flags = OPTION_FLAGS.get(field, (f"--{field.replace('_', '-')}",))
                p.add_argument(
                    *flags,
                    dest=f"field_{field}",
                    metavar=metavar,
                    help=f"default {info.default}" if not info.is_required() else None,
                )
            else:
                p.add_argument(
                    f"field_{field}", metavar=metavar, nargs=None if info.is_required() else "?"
                )
        if action.name == "logs":
            p.add_argument(
                "-f", "--follow", action="store_true", help="keep printing new lines (Ctrl-C ends)"
            )
        p.add_argument("--json", action="store_true", help="print the reply envelope as JSON")
        p.add_argument(
            "--nats-url",
            help="the bot's NATS server (else ROSEY_NATS_URL, else runtime.json in the state dir)",
        )
        p.add_argument("--state-dir", type=Path, help="where runtime.json is (default .rosey)")
        p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the bot")
    validate = actions.add_parser("validate", help="check plugin manifests offline")
    validate.add_argument("paths", nargs="*", type=Path, metavar="PATH")
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        sys.exit(EXIT_USAGE if exc.code not in (0, None) else EXIT_OK)
    if args.command == "run":
        sys.exit(_run(args))
    if args.action == "validate":
        sys.exit(_validate(args.paths))
    try:
        sys.exit(asyncio.run(_manage(args)))
    except KeyboardInterrupt:
        sys.exit(130)  # Ctrl-C while waiting for an answer (``logs -f`` ends with 0 instead)


def _run(args: argparse.Namespace) -> int:
    from rosey.bot import Bot, console_wanted
    from rosey.config import load_config

    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    overrides: dict[str, Any] = {
        "plugins_dir": [str(p) for p in args.plugins_dir] if args.plugins_dir else None,
        "state_dir": str(args.state_dir) if args.state_dir else None,
        "nats_url": args.nats_url,
    }
    try:
        config = load_config(args.config, overrides=overrides)
    except ConfigError as exc:
        print(f"rosey: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return asyncio.run(Bot(config, console=console_wanted(args.no_console)).run())
    except (BrokerError, BusError) as exc:
        print(f"rosey: cannot start: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_OK


def _validate(paths: list[Path]) -> int:
    from rosey.plugins.discovery import discover

    found = discover(paths or [Path("plugins")])
    for problem in found.problems:
        print(problem)
    if not found.problems:
        names = ", ".join(sorted(found.plugins)) or "none"
        print(f"{len(found.plugins)} plugin(s) valid: {names}")
    return EXIT_FAILED if found.problems else EXIT_OK


def _colour() -> bool:
    """Colour only for a terminal, and never when NO_COLOR is set (https://no-color.org)."""
    return (
        sys.stdout.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"
    )


def _fail(prefix: str, text: str, code: int) -> int:
    print(f"{prefix}: {text}", file=sys.stderr)
    return code


async def _manage(args: argparse.Namespace) -> int:
    from rosey.api.actions import ACTIONS
    from rosey.api.client import ManagementClient, NoBot, locate

    action = ACTIONS[args.action]
    prefix = f"rosey plugin {action.name}"
    fields = {
        key.removeprefix("field_"): value
        for key, value in vars(args).items()
        if key.startswith("field_") and value is not None
    }
    try:
        request = action.parse(fields, strict=False)
    except RoseyError as exc:
        return _fail(prefix, f"{exc} (see: {prefix} --help)", EXIT_USAGE)
    body: dict[str, Any] = request.model_dump(mode="json", exclude_unset=True)

    address = locate(args.nats_url, args.state_dir)
    if isinstance(address, NoBot):
        return _fail("rosey", address.reason, EXIT_UNREACHABLE)
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
        where = f"{address.url} (from {address.source})" if address.source else address.url
        return _fail(
            "rosey", f"no running bot could be reached at {where}: {exc}", EXIT_UNREACHABLE
        )
    except RoseyError as exc:
        return _fail(prefix, f"bad answer from the bot: {exc}", EXIT_FAILED)


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
        print(json.dumps(reply, indent=None if one_line else 2, ensure_ascii=False), flush=True)
    elif not reply["ok"]:
        error = reply.get("error") or {}
        text = error_text(str(error.get("code", "internal")), str(error.get("message", "failed")))
        print(f"{prefix}: {text}", file=sys.stderr)
    else:
        result = reply["result"]
        if action == "list":
            lines = list_table(result["plugins"], colour=_colour())
        elif action == "status":
            lines = status_lines(result, colour=_colour())
        elif action == "logs":
            lines = list(result["lines"])
        else:
            lines = result_lines(action, mutating, result, prefix="rosey plugin")
        print("\n".join(lines), flush=True)
    return EXIT_OK if reply["ok"] else EXIT_FAILED


async def _follow(
    client: ManagementClient, body: dict[str, Any], cursor: str, as_json: bool
) -> int:
    """``logs -f``: ask for what came after the cursor, twice a second, until Ctrl-C / SIGTERM."""
    import signal

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
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
                    print(json.dumps(reply, ensure_ascii=False), flush=True)
                else:
                    print("\n".join(result["lines"]), flush=True)
            if len(result["lines"]) < 1000:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(FOLLOW_INTERVAL):
                        await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    return EXIT_OK


if __name__ == "__main__":
    main()
