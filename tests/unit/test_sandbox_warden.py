"""The warden's protocol: lines from the bot, what it remembers, how it tells bye from death."""

from __future__ import annotations

import os

import pytest

from rosey.sandbox.reaper import start_time
from rosey.sandbox.warden import Warden, parse_command, serve


@pytest.mark.parametrize(
    ("line", "parsed"),
    [
        ("cgroup /sys/fs/cgroup/pids/rosey-x\n", ("cgroup", "/sys/fs/cgroup/pids/rosey-x")),
        ("cgroup /a path/with spaces", ("cgroup", "/a path/with spaces")),
        ("group 42", ("group", "42")),
        ("ungroup 42", ("ungroup", "42")),
        ("pid 7", ("pid", "7")),
        ("unpid 7", ("unpid", "7")),
        ("bye", ("bye", "")),
        ("kill everything", ("", "kill everything")),
        ("", ("", "")),
    ],
)
def test_parse_command(line: str, parsed: tuple[str, str]) -> None:
    assert parse_command(line) == parsed


def test_warden_remembers_and_forgets() -> None:
    me = os.getpid()
    warden = Warden(bot_pid=me)
    for line in (
        "cgroup /x",
        "cgroup /x",
        f"group {me}",
        "group 999999999",
        "ungroup 999999999",
        f"pid {me}",
        "pid 12",
        "unpid 12",
        "pid twelve",
        "nonsense",
    ):
        assert warden.handle(line) is True
    assert warden.cgroups == ["/x"]
    assert warden.groups == {me: start_time(me)}
    assert warden.pids == {me: start_time(me)}
    assert warden.handle("bye") is False


@pytest.mark.parametrize(("payload", "outcome"), [(b"pid 1\nbye\n", "bye"), (b"pid 1\n", "eof")])
def test_serve_tells_a_clean_goodbye_from_the_end_of_the_pipe(payload: bytes, outcome: str) -> None:
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, payload)
        os.close(write_end)
        warden = Warden(bot_pid=os.getpid())
        assert serve(warden, read_end) == outcome
        assert 1 in warden.pids
    finally:
        os.close(read_end)
