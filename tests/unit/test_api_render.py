"""Words for people: durations, list lines, status blocks, tables, chat chunking."""

from __future__ import annotations

from typing import Any

import pytest

from rosey.api.chat import is_admin
from rosey.api.render import duration, list_lines, list_table, result_lines, status_lines
from rosey.router.router import Caller
from rosey.router.split import chunk


def status(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "dice",
        "version": "1.0.0",
        "state": "running",
        "enabled": True,
        "critical": False,
        "uptime_seconds": 125.2,
        "crash_count": 1,
        "restart_count": 2,
        "error_rate": 0.25,
        "dependencies": ["base"],
        "dependents": ["fancy", "other"],
        "last_exit_code": -9,
        "last_error": None,
        "next_restart_in": None,
        "stats": {"running": True, "pid": 42, "cpu_percent": 1.5, "memory_mb": 20.25},
        "permissions": ["chat.send"],
        "enforced": True,
        "layers": ["cgroup-v1", "rlimit"],
        "limits": {"memory_mb": 256, "cpu_percent": 50, "max_processes": 32, "open_files": 256},
    }
    return {**base, **changes}


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "-"),
        (0, "-"),
        (3.25, "3.2s"),
        (45.9, "45s"),
        (60, "1m 00s"),
        (187, "3m 07s"),
        (3600 * 2 + 300, "2h 05m"),
        (86400 * 3 + 3600 * 4, "3d 04h"),
    ],
)
def test_duration(seconds: float | None, text: str) -> None:
    assert duration(seconds) == text


def test_list_lines_one_per_plugin() -> None:
    lines = list_lines(
        [
            status(),
            status(
                name="eightball", state="disabled", enabled=False, uptime_seconds=0, restart_count=0
            ),
        ]
    )
    assert lines == [
        "dice: running, enabled, up 2m 05s, restarts 2",
        "eightball: disabled, disabled, up -, restarts 0",
    ]
    assert list_lines([]) == ["no plugins installed"]


def test_status_block_shows_everything_of_design_2_6() -> None:
    lines = status_lines(
        status(last_error="crashed (signal 9)\nTraceback\nBoom", next_restart_in=2.5)
    )
    text = "\n".join(lines)
    assert lines[0] == "dice 1.0.0: running (enabled)"
    assert "uptime 2m 05s, crashes 1, restarts 2, error rate 25.0%" in text
    assert "depends on: base; needed by: fancy, other" in text
    assert "pid 42: cpu 1.5% of 50%, memory 20.25 of 256 MB" in text
    limits = "limits: memory 256 MB, cpu 50%, 32 processes, 256 open files"
    assert f"{limits}; enforced by cgroup-v1, rlimit" in text
    assert "permissions: chat.send (enforced by the broker)" in text
    assert "last exit: signal 9 (SIGKILL)" in text
    assert "next restart in 2.5s" in text
    assert text.endswith("last error:\n    | crashed (signal 9)\n    | Traceback\n    | Boom")
    assert "why:" not in text  # running: the error is history, not the reason for the state


def test_status_block_says_why_a_plugin_is_not_running() -> None:
    s = status(
        state="disabled",
        enabled=False,
        critical=True,
        last_error="disabled after 3 crashes\nx",
        stats={"running": False, "pid": None, "cpu_percent": 0.0, "memory_mb": 0.0},
    )
    lines = status_lines(s)
    assert lines[0] == "dice 1.0.0: disabled (disabled, critical)"
    assert lines[1] == "  why: disabled after 3 crashes"
    assert "  not running" in lines


def test_status_block_without_limits_or_layers() -> None:
    s = status(permissions=[], enforced=False)
    del s["limits"], s["layers"]
    text = "\n".join(status_lines(s))
    assert "pid 42: cpu 1.5%, memory 20.25 MB" in text
    assert "limits" not in text
    assert "permissions: none (not enforced by the broker)" in text


def test_colour_only_when_asked() -> None:
    assert "\x1b[" not in "\n".join(status_lines(status()) + list_table([status()]))
    assert "\x1b[32mrunning\x1b[0m" in status_lines(status(), colour=True)[0]
    assert "\x1b[31m" in list_table([status(state="crashed")], colour=True)[1]


def test_table_columns_line_up() -> None:
    rows = list_table(
        [status(), status(name="a_much_longer_name", state="stopped", stats={"running": False})]
    )
    assert rows[0].split() == [
        "NAME",
        "STATE",
        "ENABLED",
        "UPTIME",
        "RESTARTS",
        "CRASHES",
        "PID",
        "CPU",
        "MEM",
        "KIND",
    ]
    assert rows[1].index("running") == rows[2].index("stopped") == rows[0].index("STATE")
    assert rows[2].split()[-4:] == ["-", "-", "-", "plugin"]


def test_table_shows_each_kind() -> None:
    rows = list_table([status(name="cytube", kind="connector"), status(name="dice")])
    assert [r.split()[-1] for r in rows] == ["KIND", "connector", "plugin"]


def test_mutating_results_are_one_line() -> None:
    assert result_lines(
        "stop", True, status(state="stopped", stats={"running": False}), prefix="!plugin"
    ) == ["stop dice: done, it is stopped; its dependents were stopped first: fancy, other"]
    assert result_lines("start", True, status(dependents=[]), prefix="!plugin") == [
        "start dice: done, it is running (pid 42)"
    ]


def test_an_unknown_result_shape_is_shown_as_json() -> None:
    assert result_lines("newthing", False, {"a": 1}, prefix="!plugin") == ["{", '  "a": 1', "}"]


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ([], [""]),
        (["one"], ["one"]),
        (["a", "b"], ["a\nb"]),
        (["x" * 20] * 3, ["[1/2] " + "x" * 20 + "\n" + "x" * 20, "[2/2] " + "x" * 20]),
    ],
)
def test_chunk_small(lines: list[str], expected: list[str]) -> None:
    assert chunk(lines, max_chars=60, max_lines=5) == expected


@pytest.mark.parametrize("count", [1, 14, 15, 16, 40, 119, 120, 121, 500])
def test_chunk_limits_hold(count: int) -> None:
    lines = [f"line {i} " + "y" * (i % 50) for i in range(count)]
    messages = chunk(lines)
    assert 1 <= len(messages) <= 8
    assert all(len(m) <= 400 and len(m.splitlines()) <= 15 for m in messages)
    shown = [line.split("] ", 1)[-1] for m in messages for line in m.splitlines()]
    if "(truncated" in messages[-1]:
        kept = len(shown) - 1  # the last one kept may be cut short
        assert shown[: kept - 1] == lines[: kept - 1]
        assert lines[kept - 1].startswith(shown[kept - 1])
        lost = sum(map(len, lines)) - sum(map(len, shown[:kept]))
        lost_lines = count - kept + (shown[kept - 1] != lines[kept - 1])
        assert shown[-1] == f"… (truncated, {lost_lines} more lines, {lost} more characters)"
    else:
        assert shown == lines


def test_chunk_cuts_a_line_longer_than_a_message() -> None:
    messages = chunk(["z" * 1000])
    assert len(messages) == 3
    assert "".join(m.split("] ", 1)[1] for m in messages) == "z" * 1000


@pytest.mark.parametrize(
    ("platform", "user", "admins", "expected"),
    [
        ("test", "boss", ["test:boss"], True),
        ("irc", "boss", ["test:boss"], False),
        ("console", "console", ["console:console"], True),
        ("test", "tester", ["test:boss", "console:console"], False),
        ("test", "boss", [], False),
        # A bare entry (refused by the config) matches nobody here.
        ("irc", "boss", ["boss"], False),
    ],
)
def test_is_admin(platform: str, user: str, admins: list[str], expected: bool) -> None:
    """The full table of the rule is in test_admins.py; this is the chat face's use of it."""
    assert is_admin(Caller(platform, user, 0), admins) is expected


def test_a_one_line_reason_is_not_repeated_as_the_last_error() -> None:
    s = status(state="stopped", last_error="needs 'base' running first, but it is stopped")
    text = "\n".join(status_lines(s))
    assert "  why: needs 'base' running first, but it is stopped" in text
    assert "last error" not in text


def test_enable_says_how_to_start() -> None:
    stopped = status(state="stopped", stats={"running": False}, dependents=[])
    assert result_lines("enable", True, stopped, prefix="!plugin") == [
        "enable dice: done, it is stopped; start it with: !plugin start dice"
    ]


def test_a_quoted_traceback_is_drawn_with_one_bar() -> None:
    """Issue 17 item 14: stderr lines quoted in last_error rendered as ``|   |``."""
    error = (
        "crashed (exit 1); last stderr lines:\n  | Traceback (most recent call last):\n"
        '  |   File "p.py", line 3\n  | ValueError: x'
    )
    text = "\n".join(status_lines(status(last_error=error)))
    assert text.endswith(
        "last error:\n    | crashed (exit 1); last stderr lines:\n"
        "    | Traceback (most recent call last):\n"
        '    |   File "p.py", line 3\n'
        "    | ValueError: x"
    )
    assert "|   |" not in text
