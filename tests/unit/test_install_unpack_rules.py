"""Archive member checks (pure): every way out of the plugin's folder is refused, by name."""

from __future__ import annotations

import pytest

from rosey.plugins.unpack import Limits, Member, member_problems


@pytest.mark.parametrize(
    ("member", "problem"),
    [
        (Member("plugin.yaml", "file", 10), None),
        (Member("dice/plugin.yaml", "file", 10), None),
        (Member(".", "dir"), None),
        (Member("dice", "dir"), None),
        (Member("dice/a/./b.py", "file"), None),
        (Member("dice/link", "symlink", 0, "other.py"), None),
        (Member("dice/sub/link", "symlink", 0, "../other.py"), None),
        (Member("dice/hard", "hardlink", 0, "dice/other.py"), None),
        (Member("/etc/passwd", "file"), "an absolute path"),
        (Member("C:/x", "file"), "an absolute path"),
        (Member("\\\\server\\x", "file"), "an absolute path"),
        (Member("a\\..\\x", "file"), "a backslash"),
        (Member("../x", "file"), "a '..' part"),
        (Member("dice/../../x", "file"), "a '..' part"),
        (Member("a\x00b", "file"), "a NUL byte"),
        (Member("dice/l", "symlink", 0, "/etc/passwd"), "a link to the absolute path"),
        (Member("dice/l", "symlink", 0, "../../etc"), "outside the plugin's folder"),
        (Member("l", "symlink", 0, ".."), "outside the plugin's folder"),
        (Member("dice/l", "symlink", 0, ""), "a link without a target"),
        (Member("dice/h", "hardlink", 0, "../x"), "a hard link to '../x'"),
        (Member("dice/h", "hardlink", 0, "/etc/shadow"), "a link to the absolute path"),
        (Member("dice/fifo", "other"), "a device, fifo or other special file"),
    ],
)
def test_member_checks(member: Member, problem: str | None) -> None:
    found = member_problems([member])
    if problem is None:
        assert found == []
    else:
        assert len(found) == 1
        assert found[0].startswith(f"{member.name!r}: ")
        assert problem in found[0]


def test_every_bad_member_is_named_and_bounds_hold() -> None:
    limits = Limits(max_members=3, max_bytes=100)
    members = [
        Member("a", "file", 60),
        Member("../b", "file", 60),
        Member("/c", "file", 1),
        Member("d", "file", 1),
    ]
    assert member_problems(members, limits) == [
        "'../b': a '..' part leaving the plugin's folder",
        "'/c': an absolute path",
        "4 entries, more than the 3 allowed",
        "122 bytes unpacked, more than the 100 allowed (0 MiB)",
    ]
