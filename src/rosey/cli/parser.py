"""The argument parser of ``rosey`` (DESIGN 2.1): one sub-command each, the management actions
generated from ``rosey.api.actions``."""

from __future__ import annotations

import argparse
import re
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rosey.api.action import Action

__all__ = ["ALL", "HIDDEN_FIELDS", "OPTION_FLAGS", "build_parser", "cli_description", "takes_names"]

#: Request fields the CLI takes as options rather than positional words, with their flags.
OPTION_FLAGS = {"lines": ("-n", "--lines")}
#: Request fields the CLI fills in itself (``logs -f`` passes the cursor along).
HIDDEN_FIELDS = frozenset({"cursor"})


#: The word that means every plugin, where an action takes names (``restart all``).
ALL = "all"
#: The actions that take several names or ``all`` (``rollback``, ``remove``: one at a time).
SEVERAL = frozenset({"status", "start", "stop", "restart", "enable", "disable", "reload"})


def takes_names(action: Action[Any]) -> bool:
    """Whether the CLI takes several plugin names (or ``all``) for the action: those whose
    request is just ``{"plugin": NAME}``. The API keeps one plugin a request (DESIGN 2.6): the
    CLI sends one request per name."""
    return action.name in SEVERAL and tuple(action.request.model_fields) == ("plugin",)


def _names_epilog(name: str) -> str:
    every = "every plugin" + (" (the same as 'all')" if name == "status" else "")
    none = f"No NAME: {every}." if name == "status" else "Give at least one NAME, or 'all'."
    return textwrap.fill(
        f"NAME may be several names (one request each, in the order given) or '{ALL}' for "
        f"every plugin. {none} Exit 1 if it failed for any of them.",
        width=88,
    )


def cli_description(action: Action[Any]) -> str:
    """An action's help text as the CLI shows it: what the command does.

    The text is shared with chat and NATS (``rosey.api.action``); sentences about the reply's
    shape (``Result: ...``) and about the fields the CLI fills in itself (the ``cursor`` of
    ``logs``, which ``-f`` uses) are left out.
    """
    hidden = tuple(f'"{field}"' for field in HIDDEN_FIELDS)
    paragraphs = []
    for paragraph in action.help.split("\n\n"):
        sentences = re.split(r"(?<=[.!?])\s+", " ".join(paragraph.split()))
        kept = [
            s
            for s in sentences
            if s and not s.startswith("Result:") and not any(h in s for h in hidden)
        ]
        if kept:
            paragraphs.append(textwrap.fill(" ".join(kept), width=88))
    return "\n\n".join(paragraphs)


def build_parser() -> argparse.ArgumentParser:
    from rosey import __version__
    from rosey.api.actions import ACTIONS

    parser = argparse.ArgumentParser(prog="rosey", description="Rosey chat bot and plugin manager")
    parser.add_argument("--version", action="version", version=f"rosey {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the bot")
    run.add_argument("--config", type=Path, help="bot config file (default config/plugins.yaml)")
    run.add_argument("--plugins-dir", type=Path, action="append", help="plugin folder (repeatable)")
    run.add_argument("--state-dir", type=Path, help="state folder (default .rosey)")
    run.add_argument("--nats-url", help="use this NATS server instead of an embedded one")
    run.add_argument("--no-console", action="store_true", help="do not read chat from the terminal")
    run.add_argument(
        "--watch",
        action="store_true",
        help="reload a plugin when its files change (for plugin authors; a broken save rolls back)",
    )
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

    schema = sub.add_parser(
        "schema",
        help="print the JSON Schema of plugin.yaml or of the bot config (for editors)",
        description="Generated from the models 'rosey plugin validate' and 'rosey run' check "
        "with; published in docs/schema/. Point an editor at it with a first line "
        "'# yaml-language-server: $schema=PATH-OR-URL' (see docs/plugins/AUTHORING.md).",
    )
    schema.add_argument("which", choices=["plugin", "config"])

    completion = sub.add_parser(
        "completion",
        help="print a shell completion script (bash or zsh)",
        description='Load it from your shell\'s startup file: eval "$(rosey completion bash)" '
        'in ~/.bashrc, or eval "$(rosey completion zsh)" in ~/.zshrc. Plugin names are '
        "completed from the running bot when one can be reached.",
    )
    completion.add_argument("shell", nargs="?", choices=["bash", "zsh"], default="bash")
    # What the script calls on Tab: the running bot's plugin names, one a line (or nothing).
    completion.add_argument("--names", action="store_true", help=argparse.SUPPRESS)
    completion.add_argument("--state-dir", type=Path, help=argparse.SUPPRESS)
    completion.add_argument("--nats-url", help=argparse.SUPPRESS)

    plugin = sub.add_parser(
        "plugin",
        help="manage the plugins of a running bot, or validate manifests",
        description="Exit codes: 0 done; 1 the action failed (unknown plugin, refused, "
        "dependency); 2 usage; 3 no running bot could be reached.",
    )
    actions = plugin.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action in ACTIONS.values():
        several = takes_names(action)
        p = actions.add_parser(
            action.name,
            help=action.summary,
            description=cli_description(action),
            epilog=_names_epilog(action.name) if several else None,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        for field, info in action.request.model_fields.items():
            if field in HIDDEN_FIELDS:
                continue
            if several and field == "plugin":
                p.add_argument("names", nargs="*", metavar="NAME")
                continue
            if info.annotation is bool:  # install --yes, update --force, remove --purge
                flag = f"--{field.replace('_', '-')}"
                p.add_argument(
                    flag,
                    dest=f"field_{field}",
                    action="store_true",
                    default=None,
                    help=info.description,
                )
                continue
            metavar = action.metavars.get(field, field.upper())
            if field in OPTION_FLAGS or field not in action.positional:
                flags = OPTION_FLAGS.get(field, (f"--{field.replace('_', '-')}",))
                p.add_argument(
                    *flags,
                    dest=f"field_{field}",
                    metavar=metavar,
                    help=info.description
                    or (f"default {info.default}" if not info.is_required() else None),
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
        slow = action.name in ("install", "update", "rollback")  # may build an environment
        p.add_argument(
            "--timeout",
            type=float,
            default=900.0 if slow else 60.0,
            help="seconds to wait for the bot",
        )
    new = actions.add_parser(
        "new",
        help="create a new plugin folder: manifest, module with one command, its test",
        description="Creates DIR/NAME (DIR defaults to the current folder) holding plugin.yaml, "
        "a module with one command, a test using rosey.sdk.testing.PluginHarness and a "
        "pytest.ini; it passes 'rosey plugin validate' and 'pytest' as created. Exit codes: 0 "
        "done; 1 the folder exists or cannot be written; 2 usage (a name that is not allowed).",
    )
    new.add_argument("name", metavar="NAME", help="the plugin's name (lowercase, a-z 0-9 _)")
    new.add_argument("--dir", type=Path, default=Path("."), help="where to create it")
    validate = actions.add_parser("validate", help="check plugin manifests offline")
    validate.add_argument("paths", nargs="*", type=Path, metavar="PATH")
    validate.add_argument(
        "--state-dir",
        type=Path,
        help="where the plugins' Python environments are built, in envs/ (default: the "
        "config's state_dir, else .rosey)",
    )
    return parser
