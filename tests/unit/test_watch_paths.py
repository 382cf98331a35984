"""Which plugins a batch of file changes concerns (``rosey.api.watch.plugins_changed``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rosey.api.watch import plugins_changed

FOLDERS = {Path("/p/karma"): "karma", Path("/p/dice"): "dice", Path("/p/dice2"): "dice2"}


@pytest.mark.parametrize(
    ("changed", "expected"),
    [
        (["/p/karma/karma.py"], {"karma"}),
        (["/p/karma/plugin.yaml", "/p/dice/dice.py"], {"karma", "dice"}),
        (["/p/karma/lib/helpers.py"], {"karma"}),  # a subfolder
        (["/p/dice2/x.py"], {"dice2"}),  # not dice: a prefix of the name is no parent
        (["/p/karma/__pycache__/karma.cpython-311.pyc"], set()),
        (["/p/karma/karma.pyc", "/p/karma/.karma.py.swp", "/p/karma/karma.py~"], set()),
        (["/p/karma/.git/index", "/p/karma/.hidden"], set()),
        (["/p/karma/#karma.py#"], set()),
        (["/elsewhere/karma.py"], set()),
        ([], set()),
    ],
)
def test_plugins_changed(changed: list[str], expected: set[str]) -> None:
    assert plugins_changed(changed, FOLDERS) == expected
