"""EventBus: Rosey's one NATS client wrapper, and the boundary where nats-py errors become ours.

Used by the bot (manager, router, connectors) and by every plugin process (through the SDK),
so it imports only ``nats``, the standard library and ``rosey.protocol``/``rosey.errors``.

What it adds to nats-py:
- a bounded first connect (nats-py's own default retries for about two minutes);
- one JSON codec for bodies (``rosey.protocol.wire``);
- handlers that can never kill a subscription: a bad body (``DecodeError``) or any handler
  exception is logged and counted, and the next message is delivered as usual;
- translation of nats-py exceptions into the ``rosey.errors`` tree;
- the broker's permission refusals surfaced as ``BusPermissionDenied`` to a callback (a denied
  request otherwise looks like a plain timeout).
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from rosey.errors import (
    BusError,
    BusPermissionDenied,
    BusUnavailable,
    DecodeError,
    NoResponders,
    RequestTimeout,
)
from rosey.protocol import wire

# nats-py imports aiohttp for its websocket transport whenever aiohttp is installed (it is: the
# HTTP face and the CyTube connector use it). Rosey speaks nats:// over TCP only, and that import
# is ~150 ms: half of every plugin's start. Keep nats from doing it; anyone who wants aiohttp
# (the bot's HTTP face, a plugin) still imports it as usual afterwards.
_BLOCK_AIOHTTP = "aiohttp" not in sys.modules
if _BLOCK_AIOHTTP:
    sys.modules["aiohttp"] = None  # type: ignore[assignment]
# It also reads its own version with importlib.metadata (email, zipfile, csv...: ~1.5 MiB of an
# idle manager, issue 13) for the client version it reports; it falls back to "0.0.0" without.
_BLOCK_METADATA = "importlib.metadata" not in sys.modules
if _BLOCK_METADATA:
    sys.modules["importlib.metadata"] = None  # type: ignore[assignment]
try:
    import nats
    import nats.aio.client
    import nats.errors
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription as _NatsSubscription
finally:
    if _BLOCK_AIOHTTP:
        del sys.modules["aiohttp"]
    if _BLOCK_METADATA:
        del sys.modules["importlib.metadata"]
        # Its version as before, from its install record's folder name (nats_py-2.16.0.dist-info).
        for _record in Path(nats.__file__).parent.parent.glob("nats_py-*.dist-info"):
            nats.aio.client.__version__ = _record.name.split("-")[1].removesuffix(".dist")


log = logging.getLogger("rosey.bus")

T = TypeVar("T")
#: Which refusals a ``refused_or`` wait is about: ``(operation, subject) -> bool``.
RefusalFilter = Callable[[str, str], bool]

_PERMISSION = re.compile(
    r"permissions violation for (publish|subscription) to \"?([^\"\s]+)\"?", re.I
)


@dataclass(slots=True)
class Message:
    """One message received from the bus."""

    subject: str
    data: bytes
    reply: str
    _bus: EventBus = field(repr=False)

    def json(self) -> Any:
        """The body parsed as JSON; ``DecodeError`` if it is not."""
        return wire.decode(self.subject, self.data)

    async def respond(self, body: Any) -> None:
        """Reply to a request (no-op for a message that expects none)."""
        if self.reply:
            await self._bus.publish(self.reply, body)


Handler = Callable[[Message], Awaitable[None]]


@dataclass(slots=True)
class BusStats:
    """Counters a health check or benchmark can read."""

    bad_messages: int = 0
    handler_errors: int = 0
    permission_denied: int = 0
    reconnects: int = 0
    disconnects: int = 0


class Subscription:
    """A live subscription; ``unsubscribe()`` ends it."""

    def __init__(self, inner: _NatsSubscription, subject: str) -> None:
        self._inner = inner
        self.subject = subject

    async def unsubscribe(self) -> None:
        try:
            await self._inner.unsubscribe()
        except nats.errors.Error as exc:  # already closed or draining: nothing to undo
            log.debug("unsubscribe %s: %s", self.subject, exc)

    async def drain(self, linger: float = 0.0) -> None:
        """Unsubscribe, but first handle every message the server routed here before it saw
        the unsubscription (a round trip makes sure they arrived): none is dropped.

        ``linger``: keep handling for that long after the server has the unsubscription. A
        publish the server matched to us just before it (in the publisher's own server thread)
        can reach us after the round trip's answer; nats-py's drain forgets the subscription
        at once and would drop it.
        """
        inner = self._inner
        try:
            if linger > 0:
                await inner._conn._send_unsubscribe(inner._id)
                await inner._conn.flush()
                await asyncio.sleep(linger)
            await inner.drain()  # type: ignore[no-untyped-call]
        except nats.errors.Error as exc:  # already closed or draining: nothing to undo
            log.debug("drain %s: %s", self.subject, exc)


@dataclass
class _RefusalWaiter:
    """One ``refused_or`` wait: which refusals it is about, and the task to interrupt."""

    matches: RefusalFilter
    task: asyncio.Task[Any]
    denied: BusPermissionDenied | None = None


class EventBus:
    """One named connection to the NATS server."""

    def __init__(
        self,
        url: str,
        *,
        name: str,
        user: str | None = None,
        password: str | None = None,
        inbox_prefix: str | None = None,
        connect_timeout: float = 5.0,
        reconnect_wait: float = 0.25,
        on_permission_denied: Callable[[BusPermissionDenied], None] | None = None,
        no_echo: bool = False,
    ) -> None:
        self.url = url
        #: The server never delivers this connection's own messages back to it (its
        #: subscribers get what others publish only: the router and the connector relay).
        self.no_echo = no_echo
        self.name = name
        self.stats = BusStats()
        self._user = user
        self._password = password
        self._inbox_prefix = inbox_prefix
        self._connect_timeout = connect_timeout
        self._reconnect_wait = reconnect_wait
        self._on_permission_denied = on_permission_denied
        #: More callbacks for every refusal (``on_refusal``), and the waits of ``refused_or``.
        self._refusal_listeners: list[Callable[[BusPermissionDenied], None]] = []
        self._refusal_waiters: list[_RefusalWaiter] = []
        self._nc = Client()
        self._last_error: str = ""
        self._connected = asyncio.Event()
        #: Set at every reconnect (tests and health checks can await it; clear to re-arm).
        self.reconnected = asyncio.Event()
        #: Messages published, and how many of them the server has confirmed (a PONG after
        #: them): ``drain`` spends a round trip only when some are not.
        self._published = 0
        self._confirmed = 0
        #: Each subscription's delivery task (``tasks``).
        self._deliveries: weakref.WeakSet[asyncio.Task[None]] = weakref.WeakSet()

    # -- connection -------------------------------------------------------------------------

    async def connect(self) -> None:
        """Connect, or raise ``BusUnavailable`` within ``connect_timeout`` seconds."""
        options: dict[str, Any] = {
            "servers": [self.url],
            "name": self.name,
            "connect_timeout": max(0.2, min(2.0, self._connect_timeout)),
            "reconnect_time_wait": self._reconnect_wait,
            "max_reconnect_attempts": -1,
            "allow_reconnect": True,
            "error_cb": self._error_cb,
            "disconnected_cb": self._disconnected_cb,
            "reconnected_cb": self._reconnected_cb,
            "pending_size": 8 * 1024 * 1024,
            "no_echo": self.no_echo,
        }
        if self._user is not None:
            options["user"] = self._user
            options["password"] = self._password
        if self._inbox_prefix is not None:
            options["inbox_prefix"] = self._inbox_prefix
        try:
            async with asyncio.timeout(self._connect_timeout):
                await self._nc.connect(**options)
        except (TimeoutError, OSError, nats.errors.Error) as exc:
            cause = self._last_error or str(exc) or type(exc).__name__
            await self._close_quietly()
            raise BusUnavailable(self.url, self._connect_timeout, cause) from None
        self._connected.set()

    @property
    def is_connected(self) -> bool:
        return bool(self._nc.is_connected)

    async def drain(self, *, close: bool = True) -> None:
        """Let subscriptions finish what they received, make sure the server has every message
        this connection published, and close.

        A plugin's stop has ended its subscriptions already: then there is nothing to finish,
        and one PING written after everything this connection sent (its PONG: the server has
        processed all of it) is all nats-py's drain would add, in a round trip of its own and
        only when something was published since the server last answered one (``flush``).
        nats-py's drain makes a task per subscription and flushes in every case: CPU that every
        plugin would pay at the same moment when the bot stops them all.

        ``close=False``, for a process that ends right after (the plugin runner): with no
        subscription left the connection stays open once the server has everything, for the
        process's exit to close; ``tasks()`` are what it leaves running.
        """
        nc = self._nc
        if nc.is_closed:
            return
        try:
            if nc._subs or not nc.is_connected:
                await nc.drain()
                return
            if self._published != self._confirmed:
                await self._confirm(timeout=2.0)
        except (nats.errors.Error, TimeoutError, OSError) as exc:
            log.debug("%s: drain: %s", self.name, exc)
            close = True
        if close:
            await self._close_quietly()

    def tasks(self) -> set[asyncio.Task[Any]]:
        """The connection's own tasks not done yet: reading, flushing, pinging the server, and
        each subscription's delivery (also one that was just told to stop)."""
        nc = self._nc
        running = (nc._reading_task, nc._flusher_task, nc._ping_interval_task, *self._deliveries)
        return {task for task in running if task is not None and not task.done()}

    async def _confirm(self, timeout: float) -> None:
        """Return once the server has processed everything sent so far: what waits for the
        flusher is written first, then one PING (nats-py's ``flush`` writes its PING ahead of
        that buffer, see ``flush``)."""
        nc = self._nc
        published = self._published
        if nc._pending_data_size > 0 and nc._transport is not None:
            nc._transport.writelines(nc._pending[:])
            nc._pending = []
            nc._pending_data_size = 0
        await nc.flush(timeout=max(1, round(timeout)))
        self._confirmed = published

    async def close(self) -> None:
        await self._close_quietly()

    async def _close_quietly(self) -> None:
        if self._nc.is_closed:
            return
        try:
            await self._nc.close()
        except (nats.errors.Error, TimeoutError, OSError) as exc:
            log.debug("%s: close: %s", self.name, exc)

    async def __aenter__(self) -> EventBus:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- callbacks from nats-py ---------------------------------------------------------------

    async def _error_cb(self, exc: Exception) -> None:
        text = str(exc) or type(exc).__name__
        self._last_error = text
        match = _PERMISSION.search(text)
        if match is not None:
            operation = "publish to" if match.group(1).lower() == "publish" else "subscribe to"
            denied = BusPermissionDenied(match.group(2), operation)
            self.stats.permission_denied += 1
            log.warning("%s: %s", self.name, denied)
            if self._on_permission_denied is not None:
                self._on_permission_denied(denied)
            for listener in list(self._refusal_listeners):
                listener(denied)
            for waiter in list(self._refusal_waiters):
                if waiter.denied is None and waiter.matches(denied.operation, denied.subject):
                    waiter.denied = denied
                    waiter.task.cancel()
            return
        if self._connected.is_set():
            log.warning("%s: NATS error: %s", self.name, text)

    def on_refusal(self, listener: Callable[[BusPermissionDenied], None]) -> None:
        """Call ``listener`` with every refusal of this connection's publishes or subscribes."""
        self._refusal_listeners.append(listener)

    async def refused_or(self, work: Awaitable[T], matches: RefusalFilter) -> T:
        """The result of ``work``, or ``BusPermissionDenied`` as soon as the broker refuses a
        publish or subscribe that ``matches(operation, subject)`` accepts (the subject as
        nats-py reports it: lower-cased), whichever comes first.

        A refused request otherwise waits for its whole timeout: the broker drops the message
        and tells only the sender, in an error line the request never sees. ``work`` runs in
        the caller's task (no task of its own: a request stays on the hot path's order of
        writes); a refusal cancels that task, and the cancellation becomes the refusal here,
        the way ``asyncio.timeout`` turns its own cancellation into ``TimeoutError``.
        """
        task = asyncio.current_task()
        assert task is not None
        waiter = _RefusalWaiter(matches, task)
        self._refusal_waiters.append(waiter)
        try:
            return await work
        except asyncio.CancelledError:
            if waiter.denied is not None and task.uncancel() == 0:
                raise waiter.denied from None
            raise
        finally:
            self._refusal_waiters.remove(waiter)

    async def _disconnected_cb(self) -> None:
        if self._connected.is_set() and not self._nc.is_closed:
            self.stats.disconnects += 1
            log.warning("%s: disconnected from NATS; reconnecting", self.name)

    async def _reconnected_cb(self) -> None:
        self.stats.reconnects += 1
        self.reconnected.set()
        log.info("%s: reconnected to NATS", self.name)

    # -- messaging ----------------------------------------------------------------------------

    async def publish(self, subject: str, body: Any, *, reply: str = "") -> None:
        await self.publish_raw(subject, wire.encode(body), reply=reply)

    async def publish_raw(self, subject: str, data: bytes, *, reply: str = "") -> None:
        try:
            await self._nc.publish(subject, data, reply=reply)
        except nats.errors.Error as exc:
            raise BusError(f"publish to {subject} failed: {exc}") from exc
        self._published += 1

    async def flush(self, timeout: float = 2.0) -> None:
        """Return once the server has processed everything sent so far (subscriptions too).

        nats-py's ``flush`` writes its PING straight to the socket while subscriptions and
        publishes wait in a buffer for its flusher task, so one PONG can come back before the
        server saw them ("ready" before subscribed). By the first PONG the flusher has written
        that buffer (it ran while we waited); the second PING follows it on the wire.
        """
        published = self._published
        try:
            await self._nc.flush(timeout=max(1, round(timeout)))
            await self._nc.flush(timeout=max(1, round(timeout)))
        except (nats.errors.Error, TimeoutError) as exc:
            raise BusError(f"flush failed: {exc}") from exc
        self._confirmed = published

    async def subscribe(self, subject: str, handler: Handler, *, queue: str = "") -> Subscription:
        """Deliver each message on ``subject`` to ``handler``, one at a time, in order.

        The handler never kills the subscription: a ``DecodeError`` is logged and counted as a
        bad message, any other exception as a handler error. Handlers that must not hold up the
        next message hand the work to a task group of their own.
        """

        async def deliver(msg: Msg) -> None:
            message = Message(msg.subject, msg.data, msg.reply or "", self)
            try:
                await handler(message)
            except DecodeError as exc:
                self.stats.bad_messages += 1
                log.warning("%s: %s (dropped)", self.name, exc)
            except Exception:
                self.stats.handler_errors += 1
                log.exception("%s: handler for %s failed", self.name, msg.subject)

        try:
            inner = await self._nc.subscribe(subject, queue=queue, cb=deliver)
        except nats.errors.Error as exc:
            raise BusError(f"subscribe to {subject} failed: {exc}") from exc
        if inner._wait_for_msgs_task is not None:
            self._deliveries.add(inner._wait_for_msgs_task)
        return Subscription(inner, subject)

    async def request(self, subject: str, body: Any, *, timeout: float) -> Message:
        """Send a request and wait for the first reply."""
        return await self.request_raw(subject, wire.encode(body), timeout=timeout)

    async def request_raw(self, subject: str, data: bytes, *, timeout: float) -> Message:
        """The first reply; ``BusPermissionDenied`` at once if the broker refuses the publish."""
        wanted = subject.lower()
        try:
            msg = await self.refused_or(
                self._nc.request(subject, data, timeout=timeout),
                lambda operation, refused: operation == "publish to" and refused == wanted,
            )
        except nats.errors.NoRespondersError:
            raise NoResponders(subject) from None
        except (nats.errors.TimeoutError, TimeoutError):
            raise RequestTimeout(subject, timeout) from None
        except nats.errors.Error as exc:
            raise BusError(f"request to {subject} failed: {exc}") from exc
        return Message(msg.subject, msg.data, msg.reply or "", self)

    def jetstream(self) -> Any:
        """The nats-py JetStream context, for ``rosey.bus.kv`` only."""
        return self._nc.jetstream()
