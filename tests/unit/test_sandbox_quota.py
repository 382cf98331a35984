"""The data-folder quota's pure parts: which layer, what an image needs, the mount table, the
warden's mount lines. (The mounts themselves: ``tests/integration/test_security_quota.py``.)"""

from __future__ import annotations

import pytest

from rosey.errors import DataQuotaExceeded
from rosey.sandbox.mounts import MountEntry, mount_at, mounts_under, parse_mountinfo
from rosey.sandbox.quota import LOOP, WATCH, choose_layer, resize_action, to_mb
from rosey.sandbox.warden import Warden, parse_command

MIB = 1024 * 1024


@pytest.mark.parametrize(
    ("enabled", "euid", "loop_control", "missing", "layer", "why"),
    [
        (True, 0, True, [], LOOP, None),
        (False, 0, True, [], WATCH, "security.data_quota is false"),
        (True, 1000, True, [], WATCH, "does not run as root"),
        (True, 0, False, [], WATCH, "no loop devices"),
        (True, 0, True, ["mkfs.ext4"], WATCH, "mkfs.ext4 not found"),
    ],
)
def test_choose_layer(
    enabled: bool, euid: int, loop_control: bool, missing: list[str], layer: str, why: str | None
) -> None:
    chosen, note = choose_layer(
        enabled=enabled, euid=euid, loop_control=loop_control, missing_tools=missing
    )
    assert chosen == layer
    assert (note is None) if why is None else (note is not None and why in note)


@pytest.mark.parametrize(
    ("current", "wanted", "action"),
    [(8 * MIB, 8 * MIB, "keep"), (8 * MIB, 16 * MIB, "grow"), (16 * MIB, 8 * MIB, "shrink")],
)
def test_resize_action(current: int, wanted: int, action: str) -> None:
    assert resize_action(current, wanted) == action


@pytest.mark.parametrize(("size", "mb"), [(0, 0), (1, 1), (MIB, 1), (MIB + 1, 2)])
def test_to_mb_rounds_up(size: int, mb: int) -> None:
    assert to_mb(size) == mb


MOUNTINFO = """\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
42 22 7:0 / /srv/state/data/dice rw,nosuid,nodev,noexec,relatime shared:5 - ext4 /dev/loop0 rw
43 22 7:1 / /srv/state/data/my\\040plugin rw,nosuid - ext4 /dev/loop1 rw,discard
44 42 0:5 / /srv/state/data/dice/proc rw - proc proc rw
45 22 7:2 / /srv/state/data/dice rw - ext4 /dev/loop2 rw
this line is not a mount
"""


def test_parse_mountinfo_unescapes_and_skips_junk() -> None:
    entries = parse_mountinfo(MOUNTINFO)
    assert [e.target for e in entries] == [
        "/",
        "/srv/state/data/dice",
        "/srv/state/data/my plugin",
        "/srv/state/data/dice/proc",
        "/srv/state/data/dice",
    ]
    assert entries[1] == MountEntry("/srv/state/data/dice", "ext4", "/dev/loop0")


def test_mounts_under_lists_deepest_first_and_not_siblings() -> None:
    entries = [*parse_mountinfo(MOUNTINFO), MountEntry("/srv/state/database", "ext4", "x")]
    targets = [e.target for e in mounts_under(entries, "/srv/state/data/")]
    assert targets[0] == "/srv/state/data/dice/proc"
    assert sorted(targets[1:]) == [
        "/srv/state/data/dice",
        "/srv/state/data/dice",
        "/srv/state/data/my plugin",
    ]


def test_mount_at_is_the_topmost() -> None:
    entries = parse_mountinfo(MOUNTINFO)
    top = mount_at(entries, "/srv/state/data/dice/")
    assert top is not None
    assert top.source == "/dev/loop2"
    assert mount_at(entries, "/srv/state/data/none") is None


def test_the_error_names_plugin_folder_and_what_to_do() -> None:
    error = DataQuotaExceeded("dice", "/srv/state/data/dice", 130, 100)
    assert (error.plugin, error.used_mb, error.quota_mb) == ("dice", 130, 100)
    text = str(error)
    assert "/srv/state/data/dice" in text
    assert "'dice'" in text
    assert "over its quota of 100 MB (it holds 130 MB)" in text
    assert "limits.data_mb" in text


def test_the_warden_remembers_mounts_until_the_bot_unmounts_them() -> None:
    assert parse_command("mount /a path/data/x") == ("mount", "/a path/data/x")
    assert parse_command("unmount /a") == ("unmount", "/a")
    warden = Warden(bot_pid=1)
    for line in ("mount /s/data/a", "mount /s/data/b", "mount /s/data/a", "unmount /s/data/b"):
        assert warden.handle(line)
    assert warden.mounts == ["/s/data/a"]
