"""The argument parser of ``rosey`` (DESIGN 2.1): one sub-command each, the management actions
generated from ``rosey.api.actions``."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["HIDDEN_FIELDS", "OPTION_FLAGS", "build_parser"]

#: Request fields the CLI takes as options rather than positional words, with their flags.
OPTION_FLAGS = {"lines": ("-n", "--lines")}
#: Request fields the CLI fills in itself (``logs -f`` passes the cursor along).
HIDDEN_FIELDS = frozenset({"cursor"})


def build_parser() -> argparse.ArgumentParser:
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
