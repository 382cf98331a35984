"""``rosey run``: the bot in the foreground, its log on the terminal and in the core log file."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from rosey.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, CleanFormatter
from rosey.errors import BrokerError, BusError, ConfigError

if TYPE_CHECKING:
    from rosey.config import BotConfig

__all__ = ["JournalFormatter", "journal_stderr", "run"]


def run(args: argparse.Namespace) -> int:
    from rosey.bot import Bot, console_wanted
    from rosey.checker import load_config

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
    except ConfigError as exc:  # every problem of the file, one line each
        for line in str(exc).splitlines():
            print(f"rosey: {line}", file=sys.stderr)
        return EXIT_USAGE
    missing = _missing_plugin_folders(config)
    if missing is not None:
        print(f"rosey: {missing}", file=sys.stderr)
        return EXIT_USAGE
    _log_to_file(config.state_dir, min(level, logging.INFO))
    try:
        return asyncio.run(Bot(config, console=console, watch=getattr(args, "watch", False)).run())
    except (BrokerError, BusError) as exc:
        print(f"rosey: cannot start: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_OK


def _missing_plugin_folders(config: BotConfig) -> str | None:
    """Why the bot must not start with the plugin folders it was given, or None.

    A folder given by ``--plugins-dir`` or the config file that does not exist is a typo, not
    "no plugins": refuse it. The default ``plugins`` folder may be absent (a bot with
    connectors only); that is logged once the bot runs.
    """
    if "plugins_dir" not in config.model_fields_set:
        if not any(folder.is_dir() for folder in config.plugins_dir):
            logging.getLogger("rosey").warning(
                "no plugins folder %s here (%s): starting without plugins (give --plugins-dir)",
                ", ".join(map(str, config.plugins_dir)),
                Path.cwd(),
            )
        return None
    bad = [folder for folder in config.plugins_dir if not folder.is_dir()]
    if not bad:
        return None
    what = ", ".join(
        f"{folder} ({'not a folder' if folder.exists() else 'no such folder'})" for folder in bad
    )
    return f"plugins folder not found: {what}; give existing folders with --plugins-dir"


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
