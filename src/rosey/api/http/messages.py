"""What the HTTP server and the face exchange: limits, requests, responses (``server.py``).

Plain data and pure helpers (head size, the reason phrase, the ``Date`` header, h11's error
text without the client's bytes); the I/O is in ``server.py``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus

import h11

from rosey.api.http.routing import Target, parse_target

#: Writes one piece of a streamed body (raises ``ConnectionError`` once the client is gone).
Send = Callable[[bytes], Awaitable[None]]
#: A streamed body: writes its pieces with ``Send`` and returns when it is done.
Stream = Callable[[Send], Awaitable[None]]


@dataclass(frozen=True)
class Limits:
    """What one client may cost the bot (``server.py`` says what happens at each limit)."""

    max_head: int = 16 * 1024
    max_body: int = 64 * 1024
    head_timeout: float = 10.0
    body_timeout: float = 30.0
    idle_timeout: float = 75.0
    write_timeout: float = 30.0
    max_connections: int = 100
    #: After an error reply: how long and how much of the client's rest is read and dropped,
    #: so that closing does not reset the connection before the client has read the reply.
    linger_s: float = 2.0
    linger_bytes: int = 256 * 1024


@dataclass
class Response:
    """A status, headers and either a body or a ``stream`` (sent chunked, then closed).

    ``done`` is called once the server is done with the response, whether it was sent or not
    (a HEAD request, a client gone before the head): it releases what the stream holds.
    """

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    stream: Stream | None = None
    done: Callable[[], None] | None = None

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        return next((v for k, v in self.headers if k.lower() == wanted), None)

    def set_header(self, name: str, value: str) -> None:
        wanted = name.lower()
        self.headers = [(k, v) for k, v in self.headers if k.lower() != wanted]
        self.headers.append((name, value))


#: The face: a request in, a response out (it must not raise).
Handler = Callable[["Request"], Awaitable[Response]]
#: The face's reply to a request refused by the server itself: ``(status, message)``.
ErrorPage = Callable[[int, str], Response]


class Request:
    """One request: method, decoded target, headers (names lower-case), peer address, body."""

    def __init__(
        self, event: h11.Request, remote: str, read_body: Callable[[int | None], Awaitable[bytes]]
    ) -> None:
        self._read_body = read_body
        self.method = event.method.decode("ascii", "replace")
        self.target: Target = parse_target(event.target.decode("utf-8", "replace"))
        self.headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in event.headers]
        self.remote = remote
        self._body: bytes | None = None

    @property
    def path(self) -> str:
        return self.target.path

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (any case), else None."""
        wanted = name.lower()
        return next((v for k, v in self.headers if k == wanted), None)

    async def read(self) -> bytes:
        """The whole body: ``BodyTooLarge`` over the limit, ``BadRequest`` if it is cut off."""
        if self._body is None:
            length = self.header("content-length")
            declared = int(length) if length is not None else None  # h11 checked the digits
            self._body = await self._read_body(declared)
        return self._body


def has_both_lengths(event: h11.Request) -> bool:
    names = {name.lower() for name, _ in event.headers}
    return b"content-length" in names and b"transfer-encoding" in names


def head_size(event: h11.Request) -> int:
    """The size of a request head as sent (give or take optional spaces)."""
    line = len(event.method) + len(event.target) + len(b"  HTTP/1.1\r\n")
    return line + sum(len(name) + len(value) + 4 for name, value in event.headers.raw_items())


def malformed(exc: h11.RemoteProtocolError) -> str:
    """h11's reason, without the bytes it quotes (a client's text is not echoed back)."""
    reason = str(exc).split(": bytearray(")[0].split(": b'")[0].split(': b"')[0]
    return f"malformed HTTP request: {reason[:100]}"


def response_head(status: int, headers: list[tuple[str, str]]) -> h11.Response:
    """The h11 event of a response head (the reason phrase is the standard one)."""
    return h11.Response(
        status_code=status,
        headers=[(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers],
        reason=reason(status),
    )


def reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


_date: tuple[int, str] = (0, "")


def date_now() -> str:
    """The ``Date`` header's value, made once a second."""
    global _date
    second = int(time.time())
    if _date[0] != second:
        _date = (second, http_date(time.gmtime(second)))
    return _date[1]


#: Day and month names of an HTTP date (RFC 9110 5.6.7), whatever the locale.
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def http_date(when: Sequence[int]) -> str:
    """``Sun, 06 Nov 1994 08:49:37 GMT`` for ``when``, a ``time.gmtime()``."""
    year, month, day, hour, minute, second, weekday = tuple(when)[:7]
    return (
        f"{_DAYS[weekday]}, {day:02d} {_MONTHS[month - 1]} {year:04d} "
        f"{hour:02d}:{minute:02d}:{second:02d} GMT"
    )
