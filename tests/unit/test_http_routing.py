"""Request targets and routes of the HTTP face (``rosey.api.http.routing``), as tables.

The rows keep what the face answered when it ran on aiohttp: ``%2F`` stays inside one path
segment (a plugin name), invalid escapes stay as sent, ``+`` in the query is a space, blank
values count, repeated keys are kept in order, the fragment is dropped, absolute-form
targets are served, and ``GET`` routes answer ``HEAD``.
"""

from __future__ import annotations

import time

import h11
import pytest

from rosey.api.http.messages import head_size, http_date, malformed
from rosey.api.http.routing import Resolved, Route, parse_target, resolve, route


@pytest.mark.parametrize(
    ("target", "path", "segments", "query"),
    [
        ("/", "/", ("",), ()),
        ("/api/plugins", "/api/plugins", ("api", "plugins"), ()),
        ("/api/plugins/", "/api/plugins/", ("api", "plugins", ""), ()),
        ("//api/plugins", "//api/plugins", ("", "api", "plugins"), ()),
        ("/api/plugins/%64ice", "/api/plugins/dice", ("api", "plugins", "dice"), ()),
        ("/api/plugins/a%2Fb", "/api/plugins/a/b", ("api", "plugins", "a/b"), ()),
        ("/api/plugins/%C3%A9", "/api/plugins/é", ("api", "plugins", "é"), ()),
        ("/api/plugins/%zz", "/api/plugins/%zz", ("api", "plugins", "%zz"), ()),
        ("/a%ff", "/a%ff", ("a%ff",), ()),  # not UTF-8: kept as sent
        ("/api/plugins/d+ice", "/api/plugins/d+ice", ("api", "plugins", "d+ice"), ()),
        ("/a/../b", "/a/../b", ("a", "..", "b"), ()),  # not resolved: ".." is a name
        ("/x?lines=%32", "/x", ("x",), (("lines", "2"),)),
        ("/x?lines=+2", "/x", ("x",), (("lines", " 2"),)),
        ("/x?lines=1&lines=2", "/x", ("x",), (("lines", "1"), ("lines", "2"))),
        ("/x?lines", "/x", ("x",), (("lines", ""),)),
        ("/x?=x", "/x", ("x",), (("", "x"),)),
        ("/x?&&lines=1&", "/x", ("x",), (("lines", "1"),)),
        ("/x?lines=2;cursor=1", "/x", ("x",), (("lines", "2;cursor=1"),)),
        ("/x?a=2%26b%3D3", "/x", ("x",), (("a", "2&b=3"),)),
        ("/x?a=%ff", "/x", ("x",), (("a", "\ufffd"),)),
        ("/x#frag?a=1", "/x", ("x",), ()),
        ("http://127.0.0.1:8765/api/x?a=1", "/api/x", ("api", "x"), (("a", "1"),)),
        ("http://127.0.0.1", "/", ("",), ()),
        ("http://127.0.0.1?a=1", "/", ("",), (("a", "1"),)),
        ("*", "*", (), ()),
    ],
)  # fmt: skip
def test_parse_target(
    target: str, path: str, segments: tuple[str, ...], query: tuple[tuple[str, str], ...]
) -> None:
    got = parse_target(target)
    assert (got.path, got.segments, got.query) == (path, segments, query)


def test_the_first_query_value_wins() -> None:
    assert parse_target("/?token=a&token=b").first("token") == "a"
    assert parse_target("/?x=1").first("token") is None


ROUTES: list[Route[str]] = [
    route("GET", "/", "page"),
    route("GET", "/api/plugins", "list"),
    route("GET", "/api/plugins/{name}", "status"),
    route("GET", "/api/plugins/{name}/logs", "logs"),
    route("POST", "/api/plugins/{name}/{action}", "act", excluded=(("action", "logs"),)),
    route("GET", "/metrics", "metrics"),
]


@pytest.mark.parametrize(
    ("method", "target", "want"),
    [
        ("GET", "/", Resolved("page", {})),
        ("HEAD", "/", Resolved("page", {})),
        ("GET", "/api/plugins", Resolved("list", {})),
        ("GET", "/api/plugins/dice", Resolved("status", {"name": "dice"})),
        ("GET", "/api/plugins/a%2Fb", Resolved("status", {"name": "a/b"})),
        ("GET", "/api/plugins/dice/logs", Resolved("logs", {"name": "dice"})),
        ("POST", "/api/plugins/dice/stop", Resolved("act", {"name": "dice", "action": "stop"})),
        ("POST", "/api/plugins/dice/logs", Resolved(None, {}, ("GET", "HEAD"))),
        ("GET", "/api/plugins/dice/stop", Resolved(None, {}, ("POST",))),
        ("HEAD", "/api/plugins/dice/stop", Resolved(None, {}, ("POST",))),
        ("DELETE", "/api/plugins/dice", Resolved(None, {}, ("GET", "HEAD"))),
        ("FOO", "/metrics", Resolved(None, {}, ("GET", "HEAD"))),
        ("GET", "/api/plugins/../plugins", Resolved(None, {}, ("POST",))),
        ("GET", "/api/plugins/", Resolved(None, {})),  # an empty name matches nothing
        ("GET", "/api/plugins/%7Bx%7D", Resolved(None, {})),  # nor braces
        ("POST", "/api/plugins//stop", Resolved(None, {})),
        ("GET", "/api/nowhere", Resolved(None, {})),
        ("DELETE", "/api/nowhere", Resolved(None, {})),
        ("OPTIONS", "*", Resolved(None, {})),
    ],
)
def test_resolve(method: str, target: str, want: Resolved[str]) -> None:
    assert resolve(ROUTES, method, parse_target(target).segments) == want


def test_an_http_date_is_english_and_gmt_whatever_the_locale() -> None:
    assert http_date(time.gmtime(784111777)) == "Sun, 06 Nov 1994 08:49:37 GMT"
    assert http_date(time.gmtime(0)) == "Thu, 01 Jan 1970 00:00:00 GMT"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("illegal request line: bytearray(b'HELLO')", "illegal request line"),
        ("illegal header line: b'Bad Header: x'", "illegal header line"),
        ("Missing mandatory Host: header", "Missing mandatory Host: header"),
        ("x" * 300, "x" * 100),
    ],
)
def test_h11s_reason_is_shown_without_the_clients_bytes(text: str, shown: str) -> None:
    assert malformed(h11.RemoteProtocolError(text)) == f"malformed HTTP request: {shown}"


def test_a_head_is_measured_as_sent() -> None:
    head = b"GET /abc HTTP/1.1\r\nHost: t\r\nX-Long: " + b"a" * 100 + b"\r\n\r\n"
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(head)
    event = conn.next_event()
    assert isinstance(event, h11.Request)
    assert head_size(event) == len(head) - 2  # all but the blank line's CRLF
