"""``rosey``: run the bot, manage its plugins, validate manifests (DESIGN 2.1), read the merged
log stream (``rosey logs``, ``rosey.api.logstream``) and watch the plugins live (``rosey top``,
``rosey.api.top``).

``rosey run`` logs to the terminal (warnings and up with the console chat, else INFO; the
journal's format when stderr is the journal) and, everything from INFO up, to
``<state-dir>/logs/rosey-core.log`` (``rosey.sandbox.logs.CoreLogHandler``).

One module a command: ``parser`` (the arguments), ``run``, ``logs``, ``manage`` (the management
actions over NATS), ``validate``; ``common`` holds the exit codes and output helpers.

Exit codes: 0 done; 1 the action failed; 2 usage; 3 no running bot could be reached.

What it prints may quote plugins (stderr in ``last_error``, log lines, error messages), so
every output path cleans terminal escapes (``rosey.protocol.text``): the human output through
``rosey.api.render`` and ``clean``, ``--json`` through ``json_for_terminal`` (same data), and
the bot's own log lines through ``CleanFormatter``.
"""

from __future__ import annotations

import asyncio
import sys

from rosey.cli.common import EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE, CleanFormatter
from rosey.cli.parser import build_parser as _parser

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "CleanFormatter",
    "main",
]


def main(argv: list[str] | None = None) -> None:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        sys.exit(EXIT_USAGE if exc.code not in (0, None) else EXIT_OK)
    if args.command == "run":
        from rosey.cli.run import run

        sys.exit(run(args))
    if args.command == "logs" or getattr(args, "all", False):
        from rosey.cli.logs import logs

        sys.exit(logs(args))
    if args.command == "top":
        from rosey.api.top import run_top

        sys.exit(run_top(args.nats_url, args.state_dir, interval=args.interval))
    if args.action == "validate":
        from rosey.cli.validate import validate

        sys.exit(validate(args.paths))
    from rosey.cli.manage import manage

    try:
        sys.exit(asyncio.run(manage(args)))
    except KeyboardInterrupt:
        sys.exit(130)  # Ctrl-C while waiting for an answer (``logs -f`` ends with 0 instead)
