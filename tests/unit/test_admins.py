"""Who is an admin (DESIGN 2.3, 2.9): entries name their platform; users match exactly.

Regression (issue 10): ``is_admin`` also matched a bare username, so a user called
``irc:alice`` or ``console`` on any platform was an admin.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rosey.config import BotConfig, load_config
from rosey.errors import ConfigError
from rosey.protocol.admins import AdminEntry, is_admin, parse_admin
from rosey.router.router import Caller

ADMINS = ["console:console", "irc:alice", "cytube:bob", "cytube:rank>=3", "test:boss"]


@pytest.mark.parametrize(
    ("caller", "expected"),
    [
        (Caller("console", "console", 100), True),
        (Caller("irc", "alice", 0), True),
        (Caller("test", "boss", 0), True),
        (Caller("cytube", "bob", 1), True),
        # Same name, other platform.
        (Caller("test", "console", 100), False),
        (Caller("irc", "console", 0), False),
        (Caller("test", "alice", 0), False),
        (Caller("cytube", "boss", 5), True),  # by rank, not by name
        # A user whose *name* looks like an entry.
        (Caller("test", "irc:alice", 0), False),
        (Caller("test", "console:console", 0), False),
        (Caller("cytube", "rank>=3", 0), False),
        # Case and spaces are part of the name.
        (Caller("irc", "Alice", 0), False),
        (Caller("irc", "alice ", 0), False),
        # Guests never match a by-name entry: flagged, or rank <= 0 where rank 0 means guest.
        (Caller("cytube", "bob", 1, guest=True), False),
        (Caller("cytube", "bob", 0), False),
        (Caller("cytube", "bob", -1), False),
        (Caller("irc", "alice", 0, guest=True), False),
        (Caller("test", "boss", 0, guest=True), False),
        # Rank entries compare the rank on that platform only.
        (Caller("cytube", "carol", 3), True),
        (Caller("cytube", "carol", 255), True),
        (Caller("cytube", "carol", 2), False),
        (Caller("irc", "carol", 255), False),
        (Caller("cytube", "guestname", 3, guest=True), True),  # the platform's rank decides
    ],
)
def test_admin_matching(caller: Caller, expected: bool) -> None:
    entries = [parse_admin(text) for text in ADMINS]
    assert is_admin(caller, entries) is expected


@pytest.mark.parametrize(
    ("text", "entry"),
    [
        ("console:console", AdminEntry("console", user="console")),
        ("irc:alice", AdminEntry("irc", user="alice")),
        ("cytube:rank>=3", AdminEntry("cytube", min_rank=3)),
        ("cytube:rank >= 2", AdminEntry("cytube", min_rank=2)),
        ("matrix:@op:example.org", AdminEntry("matrix", user="@op:example.org")),
    ],
)
def test_entries_parse(text: str, entry: AdminEntry) -> None:
    assert parse_admin(text) == entry


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("alice", "a bare name would match a user of that name on every platform"),
        ("console", "a bare name"),
        ("", "a bare name"),
        (":alice", "does not start with a platform name"),
        ("IRC:alice", "does not start with a platform name"),
        ("irc:", "does not start with a platform name"),
        ("cytube:rank>=0", "guests included"),
        ("cytube:rank>=-1", "guests included"),
        ("irc: alice", "spaces around the name"),
    ],
)
def test_bad_entries_say_what_is_allowed(text: str, why: str) -> None:
    with pytest.raises(ValueError, match="is not allowed") as info:
        parse_admin(text)
    assert why in str(info.value)
    assert "'platform:user'" in str(info.value)
    assert "'platform:rank>=N'" in str(info.value)


def test_a_bare_name_in_the_config_is_an_error_naming_the_entry(tmp_path: Path) -> None:
    path = tmp_path / "plugins.yaml"
    path.write_text("admins: ['console:console', alice]\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert info.value.field == "admins.1"
    assert "'alice' is not allowed" in str(info.value)
    assert "'platform:user'" in str(info.value)


def test_the_default_admin_is_the_console_user() -> None:
    config = BotConfig()
    assert config.admins == ["console:console"]
    assert is_admin(Caller("console", "console", 100), config.admin_entries)
    assert not is_admin(Caller("test", "console", 100), config.admin_entries)
