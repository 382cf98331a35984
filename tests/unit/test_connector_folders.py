"""Connector folders as ``rosey plugin validate`` checks them (``rosey.connectors.folders``)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from rosey.cli.validate import validate
from rosey.connectors.folders import connector_folders, subclasses_seam
from rosey.connectors.instances import BUILTIN_TYPES

HEADER = "from rosey.sdk.connector import ConnectorPlugin\nfrom rosey.sdk import Plugin\n"


@pytest.mark.parametrize(
    ("source", "verdict"),
    [
        ("class C(ConnectorPlugin): pass", True),
        ("class B(ConnectorPlugin): pass\nclass C(B): pass", True),
        ("class C(connector.ConnectorPlugin): pass", True),
        ("class C(Plugin): pass", False),
        ("class C: pass", False),
        ("class B(Plugin): pass\nclass C(B): pass", False),
        ("class C(SomethingElse): pass", None),  # from another module: taken on trust
        ("class C(C): pass", False),  # no endless loop
    ],
)
def test_subclasses_seam(source: str, verdict: bool | None) -> None:
    assert subclasses_seam(ast.parse(HEADER + source), "C") is verdict


def connector(
    folder: Path,
    *,
    config: str = "  platform: irc\n",
    body: str = "",
    base: str = "ConnectorPlugin",
) -> Path:
    folder.mkdir(parents=True)
    (folder / "plugin.yaml").write_text(
        f"name: {folder.name}\nversion: 1.0.0\nkind: connector\nentrypoint: conn:Conn\n"
        f"permissions: [network]\n{body}config:\n{config}"
    )
    (folder / "conn.py").write_text(f"{HEADER}\nclass Conn({base}):\n    pass\n")
    return folder


def test_the_builtin_cytube_folder_is_a_valid_connector() -> None:
    found = connector_folders([BUILTIN_TYPES["cytube"]])
    assert list(found.valid) == ["cytube"]
    assert found.problems == []


@pytest.mark.parametrize(
    ("options", "field", "words"),
    [
        ({"config": "  other: 1\n"}, "config.platform", "names its platform"),
        ({"config": "  platform: 'a b'\n"}, "config.platform", "platform"),
        ({"base": "Plugin"}, "entrypoint", "is not a ConnectorPlugin"),
        ({"body": "commands: [roll]\n"}, "commands", "answers no chat commands"),
    ],
)
def test_what_is_wrong_with_a_connector_folder(
    tmp_path: Path, options: dict[str, str], field: str, words: str
) -> None:
    connector(tmp_path / "irc", **options)
    found = connector_folders([tmp_path])
    assert found.valid == {}
    assert [p.field for p in found.problems] == [field]
    assert words in found.problems[0].problem
    assert str(tmp_path / "irc" / "plugin.yaml") in str(found.problems[0])


def test_validate_names_connectors_and_their_problems(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    connector(tmp_path / "good" / "irc")
    assert validate([tmp_path / "good"]) == 0
    out = capsys.readouterr().out
    assert "1 connector(s) valid: irc" in out
    connector(tmp_path / "bad" / "matrix", base="Plugin")
    assert validate([tmp_path / "bad"]) == 1
    out = capsys.readouterr().out
    assert "matrix/plugin.yaml: entrypoint: conn:Conn is not a ConnectorPlugin" in out
    assert "valid:" not in out
