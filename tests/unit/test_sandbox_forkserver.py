"""The fork server's pure parts: reading a request, the exit status of ``SystemExit``, and the
orphan reaper's reading of ``/proc/PID/stat`` (``rosey.sandbox.forkserver``,
``rosey.sandbox.orphans``)."""

from __future__ import annotations

import json

import pytest

from rosey.sandbox.forkserver import exit_code, parse_request, requested_namespaces
from rosey.sandbox.namespaces import Request
from rosey.sandbox.orphans import parse_stat


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        ({"cwd": "/d", "env": {"A": "1"}}, ("/d", {"A": "1"}, [])),
        ({"cwd": "/d", "env": {}, "argv": ["-x"]}, ("/d", {}, ["-x"])),
    ],
)
def test_a_valid_request_is_read(request_: object, expected: object) -> None:
    assert parse_request(json.dumps(request_).encode()) == expected


@pytest.mark.parametrize(
    ("request_", "problem"),
    [
        ([], "a request is a JSON object"),
        ({"env": {}}, "cwd: a folder is required"),
        ({"cwd": "", "env": {}}, "cwd: a folder is required"),
        ({"cwd": "/d"}, "env: a mapping of strings to strings is required"),
        ({"cwd": "/d", "env": {"A": 1}}, "env: a mapping of strings to strings is required"),
        ({"cwd": "/d", "env": {}, "argv": "x"}, "argv: a list of strings is required"),
    ],
)
def test_a_bad_request_is_refused_naming_the_field(request_: object, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_request(json.dumps(request_).encode())


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        ({"cwd": "/d", "env": {}}, None),
        ({"standby": True, "namespaces": None}, None),
        ({"namespaces": {"pid": True, "ipc": True}}, Request(pid=True, ipc=True)),
        ({"namespaces": {"ipc": True}}, Request(pid=False, ipc=True)),
        ({"namespaces": {}}, Request(pid=False, ipc=False)),
    ],
)
def test_the_namespaces_a_request_asks_for_are_read(request_: object, expected: object) -> None:
    assert requested_namespaces(json.dumps(request_).encode()) == expected


@pytest.mark.parametrize(
    "value",
    [True, "pid", [], {"pid": 1}, {"pid": True, "net": True}, {"ipc": "yes"}],
)
def test_bad_namespaces_are_refused_saying_what_is_allowed(value: object) -> None:
    with pytest.raises(
        ValueError, match=r'namespaces: null or an object \{"pid": bool, "ipc": bool\}'
    ):
        requested_namespaces(json.dumps({"cwd": "/d", "namespaces": value}).encode())


def test_a_request_that_is_not_json_is_refused() -> None:
    with pytest.raises(json.JSONDecodeError):
        parse_request(b"{not json")


@pytest.mark.parametrize(
    ("code", "status"),
    [(None, 0), (0, 0), (3, 3), (70, 70), (256, 0), (257, 1), (True, 1), ("bye", 1)],
)
def test_system_exit_gives_the_interpreters_exit_status(code: object, status: int) -> None:
    assert exit_code(code) == status


@pytest.mark.parametrize(
    ("stat", "expected"),
    [
        (b"42 (python3) Z 7 42 42 0 -1", ("Z", 7)),
        (b"43 (a b) c)) S 1 43 43 0 -1", ("S", 1)),  # a name with spaces and parentheses
        (b"44 (x) R", None),
        (b"", None),
        (b"45 (x) Z notanumber", None),
    ],
)
def test_the_state_and_parent_are_read_from_proc_stat(
    stat: bytes, expected: tuple[str, int] | None
) -> None:
    assert parse_stat(stat) == expected
