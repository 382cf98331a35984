"""Edges of the plugins package: reading a failed build's output, and a placement that fails."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from installkit import plugin_folder
from rosey.plugins.requirements import blame
from rosey.plugins.store import PluginStore


@pytest.mark.parametrize(
    ("output", "asked", "named", "reason"),
    [
        # The same line twice (resolvers repeat themselves) is said once.
        (
            "error: foo has no wheel\n  error: foo has no wheel\n",
            ["foo==1"],
            ("foo==1",),
            "foo has no wheel",
        ),
        # A requirement that does not parse is not blamed, and does not stop the others.
        ("error: no version of foo\n", ["not a requirement!!", "foo==1"], ("foo==1",), None),
        ("error: no version of foo\n", ["not a requirement!!"], (), None),
        # No "error:" line: the last lines, whatever they are.
        ("Resolved 3 packages\nbar broke\n", ["bar>=2"], ("bar>=2",), "bar broke"),
        ("", ["bar>=2"], (), "the installer failed silently"),
    ],
)
def test_blame_reads_what_it_can(
    output: str, asked: list[str], named: tuple[str, ...], reason: str | None
) -> None:
    found = blame(output, asked)
    assert found.requirements == named
    if reason is not None:
        assert found.reason == reason


def test_a_failed_placement_leaves_the_plugins_folder_as_it_was(tmp_path: Path) -> None:
    """The empty folder made to reserve the name is removed again, so a retry can succeed."""
    plugins = tmp_path / "plugins"
    store = PluginStore(plugins, tmp_path / "state")
    staged = store.stage(plugin_folder(tmp_path / "v1"))
    shutil.rmtree(staged.root)  # the staged copy is gone (another process, a full disk...)
    with pytest.raises(FileNotFoundError):
        store.place(staged, "greeter")
    assert not (plugins / "greeter").exists()
    store.discard(staged)
    again = store.stage(plugin_folder(tmp_path / "v1again"))
    assert store.place(again, "greeter") == plugins / "greeter"
    assert (plugins / "greeter" / "plugin.yaml").is_file()
