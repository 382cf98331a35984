"""The HTTP face's server (``rosey.api.http.server``) against hostile clients on raw sockets.

Each limit has a client that tries to get around it: a head that never ends or trickles in, a
head or body over the limit, garbage, pipelined and half-closed requests, more connections
than allowed, a client that stops reading, one that leaves an event stream. The server runs
in this process with small limits (so the tests wait well under a second for each); every
wait is an event with a deadline, and each test fails (a timeout, a wrong reply) when its
limit is taken out. The last tests check the bot's own face with its default limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h11
import pytest

from botproc import EXAMPLE_PLUGINS, run_bot
from helpers import eventually
from httpface import HTTP_ON
from rosey.api.http.messages import Limits, Request, Response, Send
from rosey.api.http.replies import server_error
from rosey.api.http.server import HttpServer
from rosey.errors import BadRequest, BodyTooLarge

#: Small limits: each timeout is short, so a test waits well under a second for it.
SMALL = Limits(
    max_head=1024,
    max_body=2048,
    head_timeout=0.5,
    body_timeout=0.5,
    idle_timeout=0.5,
    write_timeout=0.5,
    max_connections=4,
    linger_s=0.5,
)
#: How long a test waits for what the server must do (far above every limit above).
DEADLINE = 10.0


@dataclass
class App:
    """Routes for the tests: echo a body, a huge reply, a handler that never ends, a stream."""

    stream_ended: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    seen: list[str] = field(default_factory=list)

    async def __call__(self, request: Request) -> Response:
        self.seen.append(f"{request.method} {request.path}")
        if request.path == "/echo":  # the server raises, the face maps (as app.py does)
            try:
                body = await request.read()
            except BodyTooLarge as exc:
                return server_error(413, str(exc))
            except BadRequest as exc:
                return server_error(400, str(exc))
            return Response(200, [("Content-Type", "text/plain")], b"got %d" % len(body))
        if request.path == "/big":
            return Response(200, [], b"x" * (16 * 1024 * 1024))
        if request.path == "/hang":
            await self.release.wait()
            return Response(200, [], b"released")
        if request.path == "/stream":
            return Response(200, [("Content-Type", "text/event-stream")], stream=self._stream,
                            done=self.stream_ended.set)  # fmt: skip
        return Response(200, [("Content-Type", "text/plain")], request.path.encode())

    async def _stream(self, send: Send) -> None:
        await send(b"data: hello\n\n")
        await self.release.wait()


@asynccontextmanager
async def serving(limits: Limits = SMALL) -> AsyncIterator[tuple[HttpServer, App, int]]:
    app = App()
    server = HttpServer(app, server_error, limits)
    _, port = await server.start("127.0.0.1", 0)
    try:
        yield server, app, port
    finally:
        app.release.set()
        await server.stop(grace=1.0)
        assert server.connections == 0


@asynccontextmanager
async def client(port: int) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()


def get(path: str, *extra: str) -> bytes:
    return ("\r\n".join([f"GET {path} HTTP/1.1", "Host: t", *extra]) + "\r\n\r\n").encode()


async def until_closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes, within DEADLINE (else the test fails)."""
    out = b""
    async with asyncio.timeout(DEADLINE):
        while chunk := await reader.read(65536):
            out += chunk
    return out


async def responses(reader: asyncio.StreamReader, count: int) -> list[tuple[int, bytes]]:
    """``count`` responses read with h11's client side: ``(status, body)`` each."""
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="GET", target="/", headers=[("Host", "t")]))
    conn.send(h11.EndOfMessage())
    got: list[tuple[int, bytes]] = []
    status, body = 0, b""
    async with asyncio.timeout(DEADLINE):
        while len(got) < count:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await reader.read(65536))
            elif isinstance(event, h11.Response):
                status, body = event.status_code, b""
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                got.append((status, body))
                if len(got) < count:  # the client side must start a new cycle to read on
                    conn.start_next_cycle()
                    conn.send(h11.Request(method="GET", target="/", headers=[("Host", "t")]))
                    conn.send(h11.EndOfMessage())
            elif isinstance(event, h11.ConnectionClosed):
                break
    return got


def envelope(raw: bytes) -> tuple[int, dict[str, Any], str]:
    """``(status, error, head)`` of a raw error reply."""
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    return status, json.loads(body)["error"], head.decode("latin-1")


async def test_a_head_that_never_ends_gets_408_and_is_closed() -> None:
    async with serving() as (_, app, port), client(port) as (reader, writer):
        writer.write(b"GET / HTTP/1.1\r\nHost: t\r\n")  # and never the blank line
        status, error, head = envelope(await until_closed(reader))
    assert (status, error["code"]) == (408, "bad_request")
    assert "within 0.5 s" in error["message"]
    assert "Connection: close" in head
    assert app.seen == []


async def test_a_head_trickling_in_gets_no_more_time_per_byte() -> None:
    """Slowloris: a byte every 50 ms never completes the head; the deadline is for all of it."""
    async with serving() as (_, _app, port), client(port) as (reader, writer):
        line = b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: " + b"a" * 400

        async def trickle() -> None:
            for byte in line:
                writer.write(bytes([byte]))
                await asyncio.sleep(0.05)  # pacing the hostile client, not waiting for a result

        sender = asyncio.create_task(trickle())
        try:
            out = await until_closed(reader)
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
    assert envelope(out)[0] == 408


async def test_an_idle_kept_alive_connection_is_closed() -> None:
    async with serving() as (server, _app, port), client(port) as (reader, writer):
        writer.write(get("/first"))
        assert await responses(reader, 1) == [(200, b"/first")]
        # Nothing more is sent: the server closes after idle_timeout, without a reply.
        assert await until_closed(reader) == b""
        await eventually(_none_open(server), DEADLINE, "the connection closed")


async def test_a_silent_new_connection_is_closed() -> None:
    async with serving() as (server, _app, port), client(port) as (reader, _writer):
        assert await until_closed(reader) == b""
        await eventually(_none_open(server), DEADLINE, "the connection closed")


async def test_a_head_over_the_limit_is_431() -> None:
    async with serving() as (_, app, port), client(port) as (reader, writer):
        writer.write(get("/", "X-Big: " + "a" * 2000))
        status, error, _ = envelope(await until_closed(reader))
    assert (status, error["code"]) == (431, "too_large")
    assert "1024 bytes" in error["message"]
    assert app.seen == []


async def test_a_declared_body_over_the_limit_is_refused_before_it_is_sent() -> None:
    """Only the head is sent: the 413 comes without the server waiting for 1 MB."""
    async with serving() as (_, _app, port), client(port) as (reader, writer):
        writer.write(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n")
        raw = await until_closed(reader)
    assert raw.startswith(b"HTTP/1.1 413 ")
    assert b"Connection: close" in raw


async def test_a_chunked_body_over_the_limit_is_413() -> None:
    async with serving() as (_, _app, port), client(port) as (reader, writer):
        chunk = b"%x\r\n%s\r\n" % (1000, b"y" * 1000)
        writer.write(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        writer.write(chunk * 3 + b"0\r\n\r\n")
        raw = await until_closed(reader)
    assert raw.startswith(b"HTTP/1.1 413 ")


async def test_a_body_that_stops_coming_is_400_after_its_deadline() -> None:
    async with serving() as (_, _app, port), client(port) as (reader, writer):
        writer.write(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n12345")
        status, error, head = envelope(await until_closed(reader))
    assert status == 400
    assert "did not arrive within 0.5 s" in error["message"]
    assert "Connection: close" in head


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"HELLO\r\n\r\n", 400),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40, 400),  # a TLS hello
        (b"GET / HTTP/1.1\r\n\r\n", 400),  # no Host
        (b"GET / HTTP/1.1\r\nHost: t\r\nBad Header: x\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505),
        (b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n"
         b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),  # request smuggling
        (b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n", 400),
        (b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
    ],
)  # fmt: skip
async def test_garbage_gets_an_error_and_the_connection_closed_without_a_traceback(
    data: bytes, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with serving() as (_, app, port), client(port) as (reader, writer):
        writer.write(data)
        got, error, head = envelope(await until_closed(reader))
    assert got == status
    assert error["code"] == "bad_request"
    assert "Connection: close" in head
    assert "bytearray" not in error["message"]  # the client's bytes are not echoed back
    assert "HELLO" not in error["message"]
    assert app.seen == []
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.WARNING]


async def test_pipelined_requests_are_answered_in_order() -> None:
    async with serving() as (_, app, port), client(port) as (reader, writer):
        writer.write(get("/one") + get("/two") + get("/three"))
        assert await responses(reader, 3) == [(200, b"/one"), (200, b"/two"), (200, b"/three")]
    assert app.seen == ["GET /one", "GET /two", "GET /three"]


async def test_pipelined_requests_then_garbage_answers_the_good_ones_first() -> None:
    async with serving() as (_, _app, port), client(port) as (reader, writer):
        writer.write(
            get("/one") + b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc"
        )
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        got = await responses(reader, 3)
    assert got[:2] == [(200, b"/one"), (200, b"got 3")]
    assert got[2][0] == 400


async def test_a_half_closed_client_still_gets_its_answer() -> None:
    async with serving() as (_, _app, port), client(port) as (reader, writer):
        writer.write(
            get("/asked") + b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi"
        )
        writer.write_eof()
        raw = await until_closed(reader)
    assert raw.count(b"HTTP/1.1 200 ") == 2
    assert raw.endswith(b"got 2")


async def test_expect_100_continue_is_answered_before_the_body_is_read() -> None:
    async with serving() as (_, _app, port), client(port) as (reader, writer):
        writer.write(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n"
                     b"Expect: 100-continue\r\n\r\n")  # fmt: skip
        async with asyncio.timeout(DEADLINE):
            interim = await reader.readuntil(b"\r\n\r\n")
        assert interim.startswith(b"HTTP/1.1 100 ")
        writer.write(b"body")
        assert await responses(reader, 1) == [(200, b"got 4")]


async def test_head_gets_the_headers_of_get_and_no_body() -> None:
    async with serving() as (_, _app, port), client(port) as (reader, writer):
        writer.write(b"HEAD /path HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        raw = await until_closed(reader)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"Content-Length: 5" in head
    assert body == b""


async def test_one_connection_too_many_gets_503_and_the_others_are_kept() -> None:
    async with serving() as (server, _app, port):
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(4)]
        try:
            await eventually(_open(server, 4), DEADLINE, "4 connections accepted")
            async with client(port) as (reader, _writer):
                status, error, _ = envelope(await until_closed(reader))
            assert status == 503
            assert "at most 4" in error["message"]
            # The ones held are still served, and once one closes there is room again.
            held[0][1].write(get("/still"))
            assert await responses(held[0][0], 1) == [(200, b"/still")]
        finally:
            for _, writer in held:
                writer.close()
        await eventually(_open(server, 0), DEADLINE, "the held connections closed")
        async with client(port) as (reader, writer):
            writer.write(get("/again"))
            assert await responses(reader, 1) == [(200, b"/again")]


async def test_a_client_that_does_not_read_is_dropped() -> None:
    async with serving() as (server, _app, port):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        try:
            sock.send(get("/big"))  # 16 MiB that it never reads
            await eventually(_open(server, 1), DEADLINE, "the request arrived")
            await eventually(_open(server, 0), DEADLINE, "the non-reader dropped")
        finally:
            sock.close()


async def test_a_client_leaving_an_event_stream_ends_it_at_once() -> None:
    """No event to write is needed to notice: the stream ends when the client closes."""
    async with serving() as (server, app, port), client(port) as (reader, writer):
        writer.write(get("/stream"))
        async with asyncio.timeout(DEADLINE):
            assert b"data: hello" in await reader.readuntil(b"hello")
        assert not app.stream_ended.is_set()
        writer.close()
        async with asyncio.timeout(DEADLINE):
            await app.stream_ended.wait()
        await eventually(_open(server, 0), DEADLINE, "the stream's connection closed")


async def test_stop_ends_busy_connections_after_the_grace() -> None:
    app = App()
    server = HttpServer(app, server_error, SMALL)
    _, port = await server.start("127.0.0.1", 0)
    async with client(port) as (r1, w1), client(port) as (r2, w2), client(port) as (_r3, _w3):
        w1.write(get("/hang"))
        w2.write(get("/stream"))
        async with asyncio.timeout(DEADLINE):
            await r2.readuntil(b"hello")
        await eventually(lambda: _true(app.seen == ["GET /hang", "GET /stream"]), DEADLINE, "")
        async with asyncio.timeout(DEADLINE):
            await server.stop(grace=0.2)  # the idle third closes at once, the two others later
        assert server.connections == 0
        assert app.stream_ended.is_set()
        assert await until_closed(r1) == b""  # the hung handler was cancelled: no reply
        await until_closed(r2)
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)


async def test_the_bots_face_refuses_bad_http_and_logs_no_traceback(tmp_path: Path) -> None:
    """The defaults as wired in the bot: 16 KiB heads (431), garbage (400), 64 KiB bodies."""
    async with run_bot(tmp_path, plugins_dirs=[EXAMPLE_PLUGINS / "dice"], config=HTTP_ON) as bot:
        port = int(str(bot.runtime["http_url"]).rsplit(":", 1)[1])
        token = str(bot.runtime["http_token"])
        auth = f"Authorization: Bearer {token}"
        cases = [
            (get("/api/plugins", auth, "X-Big: " + "a" * 17_000), 431, "too_large"),
            (b"\x00\xff garbage\r\n\r\n", 400, "bad_request"),
            (b"POST /api/plugins/dice/stop HTTP/1.1\r\nHost: t\r\n" + auth.encode()
             + b"\r\nContent-Length: 65537\r\n\r\n", 413, "too_large"),
        ]  # fmt: skip
        for data, status, code in cases:
            async with client(port) as (reader, writer):
                writer.write(data)
                got, error, _ = envelope(await until_closed(reader))
            assert (got, error["code"]) == (status, code), error
        async with client(port) as (reader, writer):
            writer.write(get("/api/plugins/dice", auth) + get("/api/plugins", auth))
            assert [s for s, _ in await responses(reader, 2)] == [200, 200]
        assert (await bot.manage("status", {"plugin": "dice"}))["result"]["state"] == "running"
    assert not [line for line in bot.log if "rosey.http" in line and "INFO" not in line]
    assert not [line for line in bot.log if "api/http/" in line or "/h11/" in line]  # tracebacks


def _open(server: HttpServer, count: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return server.connections == count

    return check


def _none_open(server: HttpServer) -> Callable[[], Awaitable[bool]]:
    return _open(server, 0)


async def _true(value: bool) -> bool:
    return value
