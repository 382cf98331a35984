"""rosey.sdk.files: atomic writes in a plugin's data folder."""

from __future__ import annotations

import json
from pathlib import Path

from rosey.sdk.files import write_atomically, write_json_atomically


def test_atomic_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "q.json"
    write_json_atomically(path, {"a": 1})
    write_json_atomically(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["q.json"]


def test_bytes_replace_the_old_content(tmp_path: Path) -> None:
    path = tmp_path / "chain.bin"
    write_atomically(path, b"old")
    write_atomically(path, b"new")
    assert path.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["chain.bin"]
