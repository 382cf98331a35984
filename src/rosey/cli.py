"""``rosey``: run the bot, manage its plugins, validate manifests (DESIGN 2.1), read the merged
log stream (``rosey logs``, ``rosey.api.logstream``) and watch the plugins live (``rosey top``,
``rosey.api.top``).

``rosey run`` logs to the terminal (warnings and up with the console chat, else INFO; the
journal's format when stderr is the journal) and, everything from INFO up, to
``<state-dir>/logs/rosey-core.log`` (``rosey.sandbox.logs.CoreLogHandler``).

Exit codes: 0 done; 1 the action failed; 2 usage; 3 no running bot could be reached.

What it prints may quote plugins (stderr in ``last_error``, log lines, error messages), so
every output path cleans terminal escapes (``rosey.protocol.text``): the human output through
``rosey.api.render`` and ``clean``, ``--json`` through ``json_for_terminal`` (same data), and
the bot's own log lines through ``CleanFormatter``.
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
from typing import TYPE_CHECKING, Any, ClassVar

from rosey.errors import BrokerError, BusError, ConfigError, RoseyError
from rosey.protocol.text import clean, clean_lines, json_for_terminal

if TYPE_CHECKING:
    from rosey.api.client import ManagementClient
    from rosey.api.logstream import LogLine

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
    run.add_argument(
        "--log-level",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="what the terminal shows (default WARNING with the console chat, else INFO); "
        "<state-dir>/logs/rosey-core.log always gets INFO and up (DEBUG too if asked): "
        "read it with 'rosey logs'",
    )

    logs = sub.add_parser(
        "logs",
        help="the core's and the plugins' logs merged in time order (bot running or not)",
        description="Reads <state-dir>/logs/ directly. Each line: UTC time, source (ROSEY is "
        "the core), text; a '──── NAME started/stopped/crashed ────' line marks each run of a "
        "plugin. Exit codes: 0 done; 1 no such log; 2 usage.",
    )
    logs.add_argument("names", nargs="*", metavar="NAME", help="only these plugins (default all)")
    logs.add_argument("-n", "--lines", type=int, default=50, help="lines to show (default 50)")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    logs.add_argument("--core", action="store_true", help="with NAMEs: the core's lines too")
    logs.add_argument("--state-dir", type=Path, help="the bot's state folder (default .rosey)")

    top = sub.add_parser(
        "top",
        help="live view of the plugins (state, CPU, memory, commands/s, errors, restarts)",
        description="Keys: up/down select, r restart, s stop (asks to confirm), t start, "
        "q or Ctrl-C quit. Exit codes: 0 done; 2 usage; 3 no running bot could be reached.",
    )
    top.add_argument(
        "--nats-url",
        help="the bot's NATS server (else ROSEY_NATS_URL, else runtime.json in the state dir)",
    )
    top.add_argument("--state-dir", type=Path, help="where runtime.json is (default .rosey)")
    top.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes")

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
                optional = not info.is_required() or (action.name, field) == ("logs", "plugin")
                p.add_argument(f"field_{field}", metavar=metavar, nargs="?" if optional else None)
        if action.name == "logs":
            p.add_argument(
                "-f", "--follow", action="store_true", help="keep printing new lines (Ctrl-C ends)"
            )
            p.add_argument(
                "--all",
                action="store_true",
                help="every plugin and the core, merged in time order (as 'rosey logs')",
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


class CleanFormatter(logging.Formatter):
    """Log lines without terminal escapes: many quote what a plugin wrote or chose."""

    def format(self, record: logging.LogRecord) -> str:
        return clean(super().format(record))


def main(argv: list[str] | None = None) -> None:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        sys.exit(EXIT_USAGE if exc.code not in (0, None) else EXIT_OK)
    if args.command == "run":
        sys.exit(_run(args))
    if args.command == "logs" or getattr(args, "all", False):
        sys.exit(_logs(args))
    if args.command == "top":
        from rosey.api.top import run_top

        sys.exit(run_top(args.nats_url, args.state_dir, interval=args.interval))
    if args.action == "validate":
        sys.exit(_validate(args.paths))
    try:
        sys.exit(asyncio.run(_manage(args)))
    except KeyboardInterrupt:
        sys.exit(130)  # Ctrl-C while waiting for an answer (``logs -f`` ends with 0 instead)


def _run(args: argparse.Namespace) -> int:
    from rosey.bot import Bot, console_wanted
    from rosey.config import load_config

    console = console_wanted(args.no_console)
    level = logging.getLevelName(args.log_level or ("WARNING" if console else "INFO"))
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(level)
    handler.setFormatter(_terminal_formatter())
    logging.basicConfig(level=min(level, logging.INFO), handlers=[handler])
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
    _log_to_file(config.state_dir, min(level, logging.INFO))
    try:
        return asyncio.run(Bot(config, console=console).run())
    except (BrokerError, BusError) as exc:
        print(f"rosey: cannot start: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_OK


class JournalFormatter(CleanFormatter):
    """For stderr connected to journald: its ``<N>`` priority prefix, no time (it adds its own).

    One record of several lines stays one journal entry only if it has no newline: they are
    escaped.
    """

    #: sd-daemon(3) priorities: the journal files each line at its level.
    PRIORITIES: ClassVar[dict[str, int]] = {
        "CRITICAL": 2,
        "ERROR": 3,
        "WARNING": 4,
        "INFO": 6,
        "DEBUG": 7,
    }

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record).replace("\n", "\\n")
        return f"<{self.PRIORITIES.get(record.levelname, 6)}>{text}"


def journal_stderr() -> bool:
    """Whether stderr is the journal (``JOURNAL_STREAM`` names its device and inode).

    Checked against stderr itself, as systemd advises: a child of a service inherits the
    variable but may have its stderr redirected elsewhere.
    """
    value = os.environ.get("JOURNAL_STREAM", "")
    device, _, inode = value.partition(":")
    try:
        info = os.fstat(sys.stderr.fileno())
        return (info.st_dev, info.st_ino) == (int(device), int(inode))
    except (OSError, ValueError, AttributeError):
        return False


def _terminal_formatter() -> logging.Formatter:
    if journal_stderr():
        return JournalFormatter("%(name)s: %(message)s")
    return CleanFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")


def _log_to_file(state_dir: Path, level: int) -> None:
    """Everything from ``level`` up into ``<state-dir>/logs/rosey-core.log`` (rotated, capped)."""
    from rosey.sandbox.logs import CORE_LOG_NAME, CoreLogHandler

    try:
        handler = CoreLogHandler(state_dir / "logs" / CORE_LOG_NAME)
    except OSError as exc:
        logging.getLogger("rosey").warning("cannot write the core log in %s: %s", state_dir, exc)
        return
    handler.setLevel(level)
    handler.setFormatter(CleanFormatter("%(levelname)-7s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)


def _logs(args: argparse.Namespace) -> int:
    """``rosey logs`` / ``rosey plugin logs --all``: the merged stream, read from the files."""
    from rosey.api.client import DEFAULT_STATE_DIR
    from rosey.api.logstream import missing

    if args.command == "logs":
        names: list[str] = list(args.names)
        lines, core = args.lines, args.core or not args.names
    else:
        names = [args.field_plugin] if args.field_plugin else []
        lines, core = int(args.field_lines or 50), True
    if lines < 0:
        return _fail("rosey logs", "-n must be 0 or more", EXIT_USAGE)
    state_dir = args.state_dir or Path(os.environ.get("ROSEY_STATE_DIR") or DEFAULT_STATE_DIR)
    log_dir = state_dir / "logs"
    if not log_dir.is_dir():
        return _fail(
            "rosey logs", f"no logs in {log_dir} (pass --state-dir of the bot)", EXIT_FAILED
        )
    if not os.access(log_dir, os.R_OK | os.X_OK):
        return _fail(
            "rosey logs", f"cannot read {log_dir}: run this as the bot's user", EXIT_FAILED
        )
    unknown = missing(log_dir, names)
    if unknown:
        have = sorted(p.stem for p in log_dir.glob("*.log") if p.stem.isidentifier())
        return _fail(
            "rosey logs",
            f"no log for {', '.join(unknown)} in {log_dir}; logs there: {', '.join(have)}",
            EXIT_FAILED,
        )
    try:
        return asyncio.run(_stream(log_dir, names or None, lines, core, bool(args.follow)))
    except KeyboardInterrupt:
        return EXIT_OK


async def _stream(
    log_dir: Path, names: list[str] | None, lines: int, core: bool, follow: bool
) -> int:
    """Print the last ``lines`` of the merged stream; with ``follow``, new lines as they come
    (plugins that appear meanwhile included) until Ctrl-C / SIGTERM."""
    import signal

    from rosey.api.logstream import label_width, last_lines, read_new, sources

    files = sources(log_dir, names, core=core)
    shown, cursors = await asyncio.to_thread(last_lines, files, lines)
    width = label_width(files)
    _print_lines(shown, width)
    if not follow:
        return EXIT_OK
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(FOLLOW_INTERVAL):
                    await stop.wait()
            files = sources(log_dir, names, core=core)
            new, cursors = await asyncio.to_thread(read_new, files, cursors)
            width = max(width, label_width(files))
            _print_lines(new, width)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    return EXIT_OK


def _print_lines(lines: list[LogLine], width: int) -> None:
    """Each line cleaned of what the plugin put in it; markers in bold on a colour terminal."""
    from rosey.api.logstream import layout
    from rosey.api.render import paint

    colour = _colour()
    out = [
        paint(text, "1" if line.marker else None, colour)
        for line in lines
        for text in clean_lines([layout(line, width)])
    ]
    if out:
        print("\n".join(out), flush=True)


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
    print(clean(f"{prefix}: {text}"), file=sys.stderr)
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
        text = json.dumps(reply, indent=None if one_line else 2, ensure_ascii=False)
        print(json_for_terminal(text), flush=True)
    elif not reply["ok"]:
        error = reply.get("error") or {}
        text = error_text(str(error.get("code", "internal")), str(error.get("message", "failed")))
        print(clean(f"{prefix}: {text}"), file=sys.stderr)
    else:
        result = reply["result"]
        if action == "list":
            lines = list_table(result["plugins"], colour=_colour())
        elif action == "status":
            lines = status_lines(result, colour=_colour())
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
                    print(json_for_terminal(json.dumps(reply, ensure_ascii=False)), flush=True)
                else:
                    print("\n".join(clean_lines(list(result["lines"]))), flush=True)
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
