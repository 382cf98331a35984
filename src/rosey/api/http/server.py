"""The HTTP/1.1 server under the face: asyncio streams and h11, with limits for hostile clients.

h11 (the sans-I/O state machine httpx and uvicorn use) parses strictly; this module only moves
bytes and enforces what a client may cost (``Limits``):
- a request head over ``max_head`` bytes is a ``431``, a body over ``max_body`` a ``413``
  (refused before it is read when ``Content-Length`` says so), anything h11 cannot parse a
  ``400`` (or its hint: ``501`` for an unknown transfer coding), ``Content-Length`` with
  ``Transfer-Encoding`` a ``400``, an HTTP version but 1.0 and 1.1 a ``505``; each closes the
  connection, and the client's bytes are never echoed back;
- a head must arrive within ``head_timeout`` (slow heads, slowloris: ``408``), a body within
  ``body_timeout``, the next request on a kept-alive connection within ``idle_timeout``, and
  the client must take each write within ``write_timeout``;
- at most ``max_connections`` at once; one more is answered ``503`` and closed.
Pipelined requests are answered in order. A streamed response (the event stream) ends when
its producer returns, or when the client closes or half-closes its side. None of this logs a
traceback for a client's bad input. Every connection task is owned: ``stop`` waits ``grace``
seconds for the busy ones, then cancels them and waits for their (bounded) cleanup.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import h11

from rosey.api.http.messages import (
    ErrorPage,
    Handler,
    Limits,
    Request,
    Response,
    Stream,
    date_now,
    has_both_lengths,
    head_size,
    malformed,
    response_head,
)
from rosey.errors import BadRequest, BodyTooLarge

log = logging.getLogger("rosey.http")

_READ = 64 * 1024


class _Gone(Exception):
    """The client went away or stopped reading: close without a reply."""


class _Refuse(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Connection:
    """One client's connection: requests in, responses out, until either side is done."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        handler: Handler,
        error_page: ErrorPage,
        limits: Limits,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.handler = handler
        self.error_page = error_page
        self.limits = limits
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.max_head)
        peer = writer.get_extra_info("peername")
        self.remote = str(peer[0]) if isinstance(peer, tuple) else "unknown"
        #: Waiting for a request that has not begun: safe to close at once when stopping.
        self.idle = False
        self.stopping = False

    async def run(self) -> None:
        linger = False
        try:
            first = True
            while not self.stopping:
                try:
                    event = await self._next_request(first)
                except _Refuse as refused:
                    await self._send_error(refused.status, refused.message)
                    linger = True
                    break
                if event is None:
                    break
                first = False
                if not await self._answer(event):
                    linger = self.h11.their_state is not h11.DONE
                    break
                self.h11.start_next_cycle()
        except (_Gone, ConnectionError, TimeoutError, h11.ProtocolError) as exc:
            log.debug("http: connection from %s ended: %s", self.remote, exc)
            self.abort()
        except BaseException:  # cancelled (the server stops) or a bug: no waiting on the way out
            self.abort()
            raise
        await self._close(linger)

    async def _next_request(self, first: bool) -> h11.Request | None:
        """The next request head; None when the client closed, or sent nothing in time."""
        loop = asyncio.get_running_loop()
        got_bytes = bool(self.h11.trailing_data[0])  # pipelined: it has begun already
        # A new connection has head_timeout for its first request; a kept-alive one waits
        # idle_timeout for the next to begin, which then has head_timeout to complete.
        deadline = loop.time() + (
            self.limits.head_timeout if first or got_bytes else self.limits.idle_timeout
        )
        while True:
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError as exc:
                if exc.error_status_hint == 431:
                    text = f"the request head is over {self.limits.max_head} bytes"
                    raise _Refuse(431, text) from None
                raise _Refuse(exc.error_status_hint, malformed(exc)) from None
            if isinstance(event, h11.Request):
                # h11 bounds a head still coming in; one that arrived whole is measured here.
                if head_size(event) > self.limits.max_head:
                    text = f"the request head is over {self.limits.max_head} bytes"
                    raise _Refuse(431, text)
                if event.http_version not in (b"1.0", b"1.1"):
                    version = event.http_version.decode("ascii", "replace")
                    raise _Refuse(505, f"HTTP/{version} is not served here: HTTP/1.1 (or 1.0)")
                return event
            if event is not h11.NEED_DATA:
                return None  # ConnectionClosed (a new cycle never starts PAUSED)
            self.idle = not got_bytes
            if self.stopping and self.idle:
                return None
            try:
                async with asyncio.timeout(max(deadline - loop.time(), 0)):
                    data = await self.reader.read(_READ)
            except TimeoutError:
                if not got_bytes:
                    return None  # nothing asked: close quietly
                text = f"the request head did not arrive within {self.limits.head_timeout:g} s"
                raise _Refuse(408, text) from None
            finally:
                self.idle = False
            if data and not got_bytes:
                got_bytes = True
                if not first:
                    deadline = loop.time() + self.limits.head_timeout
            self.h11.receive_data(data)

    async def _answer(self, event: h11.Request) -> bool:
        """Run the face for one request and send its response; whether to keep the connection."""
        if has_both_lengths(event):
            await self._send_error(400, "Content-Length and Transfer-Encoding together")
            return False
        request = Request(event, self.remote, self.read_body)
        try:
            response = await self.handler(request)
        except Exception:  # the face answers every error itself: this is a bug
            log.exception("http: %s %s failed", request.method, request.path[:100])
            response = self.error_page(500, "the server failed (logged)")
        try:
            self._drop_buffered_body()
            keep = self.h11.their_state is h11.DONE and not self.stopping
            if response.stream is not None:
                keep = False
            return await self._send_response(request.method, response, keep)
        finally:
            if response.done is not None:
                response.done()

    async def _send_response(self, method: str, response: Response, keep: bool) -> bool:
        headers = list(response.headers)
        headers.append(("Date", date_now()))
        if response.stream is None:
            headers.append(("Content-Length", str(len(response.body))))
        if not keep and response.stream is None:
            headers.append(("Connection", "close"))
        head = response_head(response.status, headers)
        if response.stream is not None:
            await self._send(head)
            if method != "HEAD" and not await self._stream(response.stream):
                return False
            await self._send(h11.EndOfMessage())
        elif method == "HEAD" or not response.body:
            await self._send(head, h11.EndOfMessage())
        else:  # one write (and one system call) for the whole reply
            await self._send(head, h11.Data(data=response.body), h11.EndOfMessage())
        return keep and self.h11.our_state is h11.DONE

    async def _stream(self, stream: Stream) -> bool:
        """Run ``stream`` until it returns (True) or the client leaves (False)."""

        async def send(chunk: bytes) -> None:
            await self._send(h11.Data(data=chunk))

        produce = asyncio.ensure_future(stream(send))
        watch = asyncio.ensure_future(self._watch_peer())
        try:
            await asyncio.wait({produce, watch}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (produce, watch):
                task.cancel()
            await asyncio.wait({produce, watch})  # both cancelled: their cleanup is short
        if not watch.cancelled():
            watch.exception()  # retrieved: a reset is just a client gone
        if produce.cancelled():
            return False
        error = produce.exception()
        if error is not None and not isinstance(error, _Gone | ConnectionError | TimeoutError):
            log.error("http: a streamed response failed", exc_info=error)
        return error is None and watch.cancelled()

    async def _watch_peer(self) -> None:
        """Returns when the client closes (or half-closes) or sends too much during a stream."""
        received = 0
        while received <= self.limits.max_head:
            data = await self.reader.read(_READ)
            if not data:
                return
            received += len(data)

    async def read_body(self, declared: int | None) -> bytes:
        limit = self.limits.max_body
        if declared is not None and declared > limit:
            raise BodyTooLarge(limit, declared)
        if self.h11.they_are_waiting_for_100_continue:
            await self._send(h11.InformationalResponse(status_code=100, headers=[]))
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.limits.body_timeout):
                while True:
                    event = self.h11.next_event()
                    if event is h11.NEED_DATA:
                        self.h11.receive_data(await self.reader.read(_READ))
                    elif isinstance(event, h11.Data):
                        size += len(event.data)
                        if size > limit:
                            raise BodyTooLarge(limit)
                        chunks.append(bytes(event.data))
                    else:  # EndOfMessage
                        return b"".join(chunks)
        except TimeoutError:
            raise BadRequest(
                f"the body did not arrive within {self.limits.body_timeout:g} s"
            ) from None
        except h11.RemoteProtocolError as exc:
            raise BadRequest(f"the body could not be read: {exc}") from None

    def _drop_buffered_body(self) -> None:
        """Read past a body the face did not want, as far as it has already arrived."""
        dropped = 0
        with contextlib.suppress(h11.RemoteProtocolError):
            while self.h11.their_state is h11.SEND_BODY and dropped <= self.limits.max_body:
                event = self.h11.next_event()
                if not isinstance(event, h11.Data):
                    break
                dropped += len(event.data)

    async def _send_error(self, status: int, message: str) -> None:
        if self.h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        response = self.error_page(status, message)
        with contextlib.suppress(h11.LocalProtocolError):
            await self._send_response("GET", response, keep=False)

    async def _send(self, *events: h11.Event) -> None:
        data = b"".join(self.h11.send(event) or b"" for event in events)
        if data:
            if self.writer.is_closing():
                raise _Gone("the connection is closed")
            self.writer.write(data)
            try:
                async with asyncio.timeout(self.limits.write_timeout):
                    await self.writer.drain()
            except TimeoutError:
                raise _Gone("the client does not read") from None

    async def _close(self, linger: bool) -> None:
        """Close; after an error reply, first read and drop what the client still sends."""
        try:
            if linger and not self.writer.is_closing() and self.writer.can_write_eof():
                with contextlib.suppress(OSError, TimeoutError):
                    self.writer.write_eof()
                    async with asyncio.timeout(self.limits.linger_s):
                        dropped = 0
                        while dropped < self.limits.linger_bytes:
                            data = await self.reader.read(_READ)
                            if not data:
                                break
                            dropped += len(data)
        except BaseException:  # cancelled while lingering: the server stops
            self.abort()
            raise
        self.writer.close()  # every write was drained: nothing waits in the buffer

    def abort(self) -> None:
        self.writer.transport.abort()


class HttpServer:
    """Listens on one address and serves ``handler`` with ``limits``."""

    def __init__(self, handler: Handler, error_page: ErrorPage, limits: Limits) -> None:
        self.handler = handler
        self.error_page = error_page
        self.limits = limits
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[None], _Connection] = {}

    @property
    def connections(self) -> int:
        return len(self._connections)

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Listen; the address bound (the real port when ``port`` is 0)."""
        self._server = await asyncio.start_server(
            self._serve, host, port, reuse_address=True, limit=self.limits.max_head
        )
        bound = self._server.sockets[0].getsockname()
        return str(bound[0]), int(bound[1])

    async def stop(self, grace: float = 2.0) -> None:
        """Stop listening; idle connections close now, busy ones get ``grace`` seconds."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for connection in self._connections.values():
            connection.stopping = True
            if connection.idle:
                connection.abort()
        tasks = set(self._connections)
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=grace)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late, timeout=1.0)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._connections) >= self.limits.max_connections:
            self._turn_away(writer)
            return
        task = asyncio.current_task()
        assert task is not None
        connection = _Connection(reader, writer, self.handler, self.error_page, self.limits)
        self._connections[task] = connection
        try:
            await connection.run()
        finally:
            del self._connections[task]

    def _turn_away(self, writer: asyncio.StreamWriter) -> None:
        """One connection too many: a ``503`` written without waiting, and closed."""
        conn = h11.Connection(h11.SERVER)
        page = self.error_page(
            503, f"too many connections (at most {self.limits.max_connections}); retry later"
        )
        headers = [*page.headers, ("Content-Length", str(len(page.body))), ("Connection", "close")]
        writer.write(conn.send(response_head(503, headers)) + page.body)
        writer.close()
