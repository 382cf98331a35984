"""``rosey``: run the bot, manage its plugins, validate manifests (DESIGN 2.1), read the merged
log stream (``rosey logs``, ``rosey.api.logstream``) and watch the plugins live (``rosey top``,
``rosey.api.top``).

``rosey run`` logs to the terminal (warnings and up with the console chat, else INFO; the
journal's format when stderr is the journal) and, everything from INFO up, to
``<state-dir>/logs/rosey-core.log`` (``rosey.sandbox.logs.CoreLogHandler``).

One module a command: ``parser`` (the arguments), ``run``, ``logs``, ``manage`` (the management
actions over NATS), ``validate``; ``common`` holds the exit codes and output helpers.

Exit codes: 0 done; 1 the action failed; 2 usage; 3 no running bot could be reached; 141 the
reader of the output went away (a closed pipe, as after SIGPIPE), quietly.

What it prints may quote plugins (stderr in ``last_error``, log lines, error messages), so
every output path cleans terminal escapes (``rosey.protocol.text``): the human output through
``rosey.api.render`` and ``clean``, ``--json`` through ``json_for_terminal`` (same data), and
the bot's own log lines through ``CleanFormatter``.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys

from rosey.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_PIPE_CLOSED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    CleanFormatter,
)
from rosey.cli.parser import build_parser as _parser

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_PIPE_CLOSED",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "CleanFormatter",
    "main",
]


def main(argv: list[str] | None = None) -> None:
    """Run one command; its exit code (see the module docstring).

    When whoever reads the output goes away (``rosey plugin list | head -1``), the command
    stops quietly with exit 141, as a process ended by SIGPIPE does (what ``set -o pipefail``
    expects), instead of a ``BrokenPipeError`` traceback. SIGPIPE itself stays ignored: the
    bot and the CLI write to sockets, where a signal would end them for a lost connection.
    """
    try:
        code = _dispatch(argv)
        sys.stdout.flush()  # a closed pipe shows here for output still in the buffer
    except BrokenPipeError:
        code = _reader_gone()
    sys.exit(code)


def _reader_gone() -> int:
    # Point stdout at /dev/null so that the interpreter's final flush does not fail again.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return EXIT_PIPE_CLOSED


def _dispatch(argv: list[str] | None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return EXIT_USAGE if exc.code not in (0, None) else EXIT_OK
    if args.command == "run":
        from rosey.cli.run import run

        # The bot runs for days: its parser (~130 KiB) is not kept alive meanwhile. Its parts
        # refer to each other, so only the cycle collector frees them: now, while it is cheap.
        del parser
        gc.collect()
        return run(args)
    if args.command == "logs" or getattr(args, "all", False):
        from rosey.cli.logs import logs

        return logs(args)
    if args.command == "schema":
        from rosey.cli.schema import schema

        return schema(args)
    if args.command == "completion":
        from rosey.cli.completion import completion

        return completion(args, parser)
    if args.command == "top":
        from rosey.api.top import run_top

        return run_top(args.nats_url, args.state_dir, interval=args.interval)
    if args.action == "validate":
        from rosey.cli.validate import validate

        return validate(args.paths, state_dir=args.state_dir)
    if args.action == "new":
        from rosey.cli.new import new

        return new(args.name, args.dir)
    from rosey.cli.manage import manage

    try:
        if args.action in ("install", "update"):  # the grants confirmation round trip
            from rosey.cli.install import change

            return asyncio.run(change(args))
        return asyncio.run(manage(args))
    except KeyboardInterrupt:
        return 130  # Ctrl-C while waiting for an answer (``logs -f`` ends with 0 instead)
