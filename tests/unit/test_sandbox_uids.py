"""Per-plugin uids: allocation as a table, stability across restarts, the data folder handed
over; and the sandbox applying each rlimit on its own."""

from __future__ import annotations

import errno
import os
import resource
import zlib
from pathlib import Path

import pytest

from rosey.errors import PluginError
from rosey.sandbox.confine import apply_rlimits
from rosey.sandbox.uids import UidRangeExhausted, allocate, own_data_dir, plugin_uid

FIRST, LAST = 1000, 1009  # ten uids


def _start(name: str) -> int:
    return FIRST + zlib.crc32(name.encode()) % (LAST - FIRST + 1)


def _nobody(uid: int) -> bool:
    return False


@pytest.mark.parametrize(
    ("name", "assigned", "host", "expected"),
    [
        # A new name starts from its hash.
        ("dice", {}, set(), _start("dice")),
        # Its recorded uid stays.
        ("dice", {"dice": 1003}, set(), 1003),
        # ... unless the host's databases now know it, another plugin has it, or it left the range.
        ("dice", {"dice": 1003}, {1003}, _start("dice") if _start("dice") != 1003 else 1004),
        ("dice", {"dice": 1003, "trivia": 1003}, set(), None),
        ("dice", {"dice": 5000}, set(), _start("dice")),
        # Taken uids are skipped, wrapping around the range.
        ("dice", {"a": _start("dice")}, set(), FIRST + (_start("dice") - FIRST + 1) % 10),
        ("x", {}, set(range(FIRST, LAST)), LAST),
    ],
)
def test_allocate(
    name: str, assigned: dict[str, int], host: set[int], expected: int | None
) -> None:
    uid = allocate(name, assigned, FIRST, LAST, in_use=host.__contains__)
    others = {v for k, v in assigned.items() if k != name}
    if expected is None:  # a clash in the record: any free uid, never the other's
        assert uid not in others
    else:
        assert uid == expected
    assert FIRST <= uid <= LAST
    assert uid not in host


def test_a_full_range_is_a_plugin_error_naming_the_switch() -> None:
    taken = {f"p{i}": uid for i, uid in enumerate(range(FIRST, LAST + 1))}
    with pytest.raises(UidRangeExhausted) as caught:
        allocate("dice", taken, FIRST, LAST, in_use=_nobody)
    assert isinstance(caught.value, PluginError)
    assert "security.plugin_uid_range 1000-1009" in str(caught.value)
    assert "security.plugin_uids: false" in str(caught.value)


def test_uids_are_stable_across_restarts_and_the_record_is_private(tmp_path: Path) -> None:
    first = {name: plugin_uid(tmp_path, name, 61184, 65519) for name in ("dice", "trivia")}
    assert len(set(first.values())) == 2
    again = {name: plugin_uid(tmp_path, name, 61184, 65519) for name in ("trivia", "dice")}
    assert again == first
    record = tmp_path / "uids.json"
    assert record.stat().st_mode & 0o777 == 0o600


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_the_data_folder_is_handed_to_the_plugin_uid(tmp_path: Path) -> None:
    data = tmp_path / "data" / "dice"
    (data / "sub").mkdir(parents=True)
    (data / "sub" / "file").write_text("x")
    (data / "link").symlink_to("/etc/passwd")
    own_data_dir(data, 61190, 61190)
    for path in (data, data / "sub", data / "sub" / "file"):
        assert (path.stat().st_uid, path.stat().st_gid) == (61190, 61190)
    assert (data / "link").lstat().st_uid == 61190
    assert Path("/etc/passwd").stat().st_uid == 0  # the link was not followed
    assert data.stat().st_mode & 0o777 == 0o700
    assert data.parent.stat().st_mode & 0o777 == 0o711  # traverse, no listing of the others


def test_each_rlimit_is_applied_on_its_own() -> None:
    """Regression (issue 10): one limit the kernel refused dropped the whole rlimit layer."""
    applied: list[int] = []

    def prlimit(pid: int, which: int, value: tuple[int, int]) -> None:
        if which == resource.RLIMIT_NOFILE:
            raise OSError(errno.EPERM, "Operation not permitted")
        applied.append(which)

    values = {
        resource.RLIMIT_NOFILE: (25000, 25000),
        resource.RLIMIT_FSIZE: (1, 1),
        resource.RLIMIT_CORE: (0, 0),
    }
    refused = apply_rlimits(42, values, prlimit)
    assert list(refused) == [resource.RLIMIT_NOFILE]
    assert applied == [resource.RLIMIT_FSIZE, resource.RLIMIT_CORE]
