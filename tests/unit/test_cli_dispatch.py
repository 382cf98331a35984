"""rosey.cli._dispatch: what ``rosey run`` keeps alive while the bot runs."""

from __future__ import annotations

import argparse
import gc

import pytest

import rosey.cli.run
from rosey.cli import _dispatch


def test_the_bot_runs_without_its_argument_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    """The parser (~130 KiB with its subparsers) is freed before the bot starts: it runs for
    days and never parses again."""

    def parsers() -> int:  # pytest's own are alive too
        return sum(isinstance(o, argparse.ArgumentParser) for o in gc.get_objects())

    alive: list[int] = []

    def run(args: argparse.Namespace) -> int:
        alive.append(parsers())
        return 0

    monkeypatch.setattr(rosey.cli.run, "run", run)
    gc.collect()
    before = parsers()
    assert _dispatch(["run", "--no-console"]) == 0
    assert alive == [before]
