"""rosey.files: the one atomic (and, where asked, private) file write."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from rosey.files import write_atomically, write_json_atomically


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_private_files_are_owner_only_even_over_a_stale_temporary(tmp_path: Path) -> None:
    """A temporary file left by a crash with wide bits must not make the new file readable."""
    path = tmp_path / "runtime.json"
    stale = tmp_path / ".runtime.json.tmp"
    stale.write_text("old")
    stale.chmod(0o666)
    write_json_atomically(path, {"password": "s3cret"}, private=True)
    assert mode(path) == 0o600
    assert json.loads(path.read_text()) == {"password": "s3cret"}
    assert [p.name for p in tmp_path.iterdir()] == ["runtime.json"]


def test_a_private_rewrite_narrows_a_file_that_was_wider(tmp_path: Path) -> None:
    path = tmp_path / "nats-server.conf"
    path.write_text("old")
    path.chmod(0o644)
    write_atomically(path, b"new", private=True)
    assert mode(path) == 0o600
    assert path.read_bytes() == b"new"


def test_ordinary_files_follow_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        write_atomically(tmp_path / "state.bin", b"x")
    finally:
        os.umask(old)
    assert mode(tmp_path / "state.bin") == 0o644


def test_a_failed_write_leaves_the_old_content_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "q.json"
    write_json_atomically(path, {"a": 1})
    with pytest.raises(TypeError):
        write_json_atomically(path, {"a": object()})
    assert json.loads(path.read_text()) == {"a": 1}
    with pytest.raises(TypeError):
        write_atomically(path, "not bytes")  # type: ignore[arg-type]
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["q.json"]


def test_the_sdk_names_are_the_same_functions() -> None:
    """Plugins import ``rosey.sdk.files``; it must stay the one implementation."""
    from rosey.sdk import files

    assert files.write_atomically is write_atomically
    assert files.write_json_atomically is write_json_atomically
