"""``rosey``: run the bot, manage its plugins, validate manifests (DESIGN 2.1).

Exit codes: 0 done; 1 the action failed; 2 usage; 3 no running bot could be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from rosey.errors import BrokerError, BusError, ConfigError, RoseyError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3
MANAGEMENT_ACTIONS = ("list", "status", "start", "stop", "restart", "enable", "disable", "logs")


def _parser() -> argparse.ArgumentParser:
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
        "plugin", help="manage the plugins of a running bot, or validate manifests"
    )
    actions = plugin.add_subparsers(dest="action", required=True)
    for name in MANAGEMENT_ACTIONS:
        p = actions.add_parser(name)
        if name != "list":
            p.add_argument("name", metavar="NAME")
        if name == "logs":
            p.add_argument("-n", "--lines", type=int, default=50)
            p.add_argument("-f", "--follow", action="store_true")
        p.add_argument("--json", action="store_true", help="print the raw reply as JSON")
        p.add_argument("--nats-url", help="the bot's NATS server")
        p.add_argument("--state-dir", type=Path, help="where runtime.json is (default .rosey)")
        p.add_argument("--timeout", type=float, default=30.0)
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
    sys.exit(asyncio.run(_manage(args)))


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


def _find_bot(args: argparse.Namespace) -> tuple[str, str | None, str | None] | None:
    url = args.nats_url or os.environ.get("ROSEY_NATS_URL")
    if url:
        return url, None, None
    from rosey.bot import RuntimeInfo

    state_dir = args.state_dir or Path(os.environ.get("ROSEY_STATE_DIR", ".rosey"))
    info = RuntimeInfo.read(state_dir)
    if info is None:
        return None
    return info.nats_url, info.user, info.password


async def _manage(args: argparse.Namespace) -> int:
    from rosey.bus.client import EventBus
    from rosey.protocol import subjects

    found = _find_bot(args)
    if found is None:
        print(
            "rosey: no running bot found (no --nats-url, ROSEY_NATS_URL or runtime.json); "
            "start one with 'rosey run'",
            file=sys.stderr,
        )
        return EXIT_UNREACHABLE
    url, user, password = found
    bus = EventBus(url, name="rosey-cli", user=user, password=password, connect_timeout=3.0)
    try:
        await bus.connect()
    except BusError as exc:
        print(f"rosey: no running bot could be reached: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    try:
        body: dict[str, Any] = {}
        if args.action != "list":
            body["plugin"] = args.name
        if args.action == "logs":
            body["lines"] = args.lines
        try:
            reply_msg = await bus.request(
                subjects.manager_action(args.action), body, timeout=args.timeout
            )
            reply = reply_msg.json()
        except BusError as exc:
            print(f"rosey: the bot did not answer: {exc}", file=sys.stderr)
            return EXIT_UNREACHABLE
        except RoseyError as exc:
            print(f"rosey: bad answer from the bot: {exc}", file=sys.stderr)
            return EXIT_FAILED
        if args.json:
            print(json.dumps(reply, indent=2))
        else:
            _print_human(args.action, reply)
        return EXIT_OK if reply.get("ok") else EXIT_FAILED
    finally:
        await bus.close()


def _print_human(action: str, reply: dict[str, Any]) -> None:
    from rosey.api.chat import format_list, format_status

    if not reply.get("ok"):
        error = reply.get("error") or {}
        print(
            f"rosey: {error.get('message', 'failed')} ({error.get('code', 'internal')})",
            file=sys.stderr,
        )
        return
    result = reply["result"]
    if action == "list":
        print(format_list(result["plugins"]))
    elif action == "logs":
        print("\n".join(result["lines"]))
    else:
        print(format_status(result))


if __name__ == "__main__":
    main()
