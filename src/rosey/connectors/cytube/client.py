"""The CyTube connector's socket.io side: one channel, one account, events in, chat lines out.

``CytubeClient.run()`` discovers the socket server (``/socketconfig/<channel>.json``, preferring a
``secure`` entry), connects with python-socketio's ``AsyncClient``, joins the channel (with its
password) and logs in (account or guest), then turns the server's events into bus events through
an ``EventSink`` (the process wrapper publishes them) until the connection ends; then it decides,
with ``policy``, whether and when to connect again. ``enqueue()`` takes what the bus asks to say
(``rosey.platform.cytube.send``) into a bounded queue that one sender drains through the pacer.

Ordering: python-engineio hands each incoming packet to its own task, so the handlers here are
plain functions that update state at once and put bus events on one queue that one task
publishes in order; nothing awaits between a packet and its effect on our state.

Delivery (``outbox``): the server echoes every accepted line to its sender (``chatMsg`` for
chat, ``pm`` for a PM) and answers a dropped one with ``cooldown`` (or ``noflood``/
``spamFiltered``), in the order the lines were sent; the handlers here tell the outbox, which keeps
every line in flight until its answer. Nothing is dropped silently: what cannot be queued or is
given up is counted in ``status()``.

Liveness is engine.io's: the server pings every ``pingInterval`` and python-engineio drops the
connection when a ping is ``pingTimeout`` late; a quiet channel is healthy.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import aiohttp
import socketio

from rosey.connectors.cytube.outbox import Counters, Outbox
from rosey.connectors.cytube.pacer import ChannelLimits, Pacer
from rosey.connectors.cytube.policy import (
    Backoff,
    Refusal,
    RefusalKind,
    pick_socket_server,
    refusal_from_connect_error,
    refusal_from_error_msg,
    refusal_from_kick,
    refusal_from_login,
    refusal_from_need_password,
)
from rosey.connectors.cytube.settings import CytubeSettings
from rosey.connectors.cytube.state import ReplayFilter, Seen, UserList
from rosey.connectors.cytube.text import incoming_text

__all__ = [
    "EVENTS_MEDIA_CHANGE",
    "EVENTS_MESSAGE",
    "EVENTS_USER_JOIN",
    "EVENTS_USER_LEAVE",
    "ConnectorState",
    "CytubeClient",
    "EventSink",
    "Status",
]

log = logging.getLogger(__name__)

# DESIGN 2.4 and 2.9. (They move to rosey.protocol.subjects with the process wrapper.)
EVENTS_MESSAGE = "rosey.events.message"
EVENTS_USER_JOIN = "rosey.events.user.join"
EVENTS_USER_LEAVE = "rosey.events.user.leave"
EVENTS_MEDIA_CHANGE = "rosey.events.media.change"

SERVER_USER = "[server]"
#: Bus events waiting for the sink; beyond, they are dropped and counted (a stuck bus must not
#: grow the connector without bound).
EVENT_BACKLOG = 1000


class EventSink(Protocol):
    """Where the connector's events go: the process wrapper publishes them on the bus."""

    async def publish_event(self, subject: str, body: dict[str, Any]) -> None: ...


class ConnectorState(enum.Enum):
    STARTING = "starting"
    CONNECTING = "connecting"
    JOINED = "joined"
    WAITING = "waiting"  # to connect again
    STOPPED = "stopped"  # by stop(), or a refusal that retrying cannot fix


@dataclass(frozen=True)
class Status:
    """What ``rosey plugin status`` shows for the connector."""

    state: ConnectorState
    last_error: str | None
    refusal: RefusalKind | None
    queued: int
    in_flight: int
    counters: dict[str, int]


class _Session:
    """One socket.io connection: its client, and the answers the handshake waits for."""

    def __init__(self, sio: socketio.AsyncClient, loop: asyncio.AbstractEventLoop) -> None:
        self.sio = sio
        self.joined: asyncio.Future[None] = loop.create_future()
        self.login: asyncio.Future[dict[str, Any]] = loop.create_future()
        self.done: asyncio.Future[Refusal | None] = loop.create_future()
        #: Why the server is about to drop us (kick, bad channel), set before it disconnects.
        self.refusal: Refusal | None = None
        self.up = False

    def finish(self, refusal: Refusal | None) -> None:
        if not self.done.done():
            self.done.set_result(refusal if refusal is not None else self.refusal)


class CytubeClient:
    """One CyTube channel joined as one user. See the module docstring."""

    def __init__(
        self,
        settings: CytubeSettings,
        sink: EventSink,
        *,
        backoff: Backoff | None = None,
        pacer: Pacer | None = None,
        replay: ReplayFilter | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.sink = sink
        self.backoff = backoff or Backoff()
        self.pacer = pacer or Pacer()
        self.replay = replay or ReplayFilter()
        self.users = UserList()
        self.limits = ChannelLimits()
        self.counters = Counters()
        #: Set while the bot is in the channel (joined and logged in).
        self.joined = asyncio.Event()
        self._rng = rng or random.Random()
        self._state = ConnectorState.STARTING
        self._refusal: Refusal | None = None
        self.outbox = Outbox(
            self.pacer,
            self.counters,
            channel=settings.channel_key,
            max_length=settings.max_length,
            queue_size=settings.queue_size,
            max_resends=settings.max_resends,
        )
        self._wakeup = asyncio.Event()
        self._stopping = asyncio.Event()
        self._events: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue(EVENT_BACKLOG)
        self._session: _Session | None = None
        self._name = settings.username
        self._media_id: tuple[object, object] | None = None
        self._chat_rank: float = 0
        self._ids = itertools.count(1)
        self._kicks_in_row = 0

    # ------------------------------------------------------------------ the wrapper's side

    def status(self) -> Status:
        return Status(
            state=self._state,
            last_error=self._refusal.words if self._refusal is not None else None,
            refusal=self._refusal.kind if self._refusal is not None else None,
            queued=self.outbox.queued,
            in_flight=self.outbox.in_flight,
            counters=asdict(self.counters),
        )

    def enqueue(self, request: Mapping[str, Any]) -> bool:
        """Queue a ``rosey.platform.cytube.send`` body ``{channel, text, in_reply_to, to?}``.

        The text is split into chat lines (``text.split_reply``). False, and the lines counted as
        ``dropped``, when the queue has no room for all of them (a reply is sent whole or not at
        all) or the body is not for this channel.
        """
        dropped = self.counters.dropped
        if not self.outbox.enqueue(request):
            if self.counters.dropped > dropped:
                log.warning(
                    "cytube: %d line(s) dropped (queue of %d full, or not for channel %r)",
                    self.counters.dropped - dropped,
                    self.settings.queue_size,
                    self.settings.channel_key,
                )
            return False
        self._wakeup.set()
        return True

    async def stop(self) -> None:
        """Make ``run()`` leave the channel and return (idempotent).

        Only ``run()`` disconnects its socket: two concurrent disconnects of one python-engineio
        client can leave its write loop waiting for ever.
        """
        self._stopping.set()
        session = self._session
        if session is not None:
            session.finish(None)

    async def run(self) -> None:
        """Stay in the channel until ``stop()`` or a refusal that retrying cannot fix."""
        async with asyncio.TaskGroup() as group:
            workers = [group.create_task(self._publisher()), group.create_task(self._sender())]
            try:
                await self._connect_loop()
            finally:
                for worker in workers:
                    worker.cancel()

    # ------------------------------------------------------------------ connecting

    async def _connect_loop(self) -> None:
        loop = asyncio.get_running_loop()
        at_least = 0.0
        while not self._stopping.is_set():
            delay = self.backoff.delay(loop.time(), self._rng, at_least=at_least)
            if delay > 0:
                self._state = ConnectorState.WAITING
                log.info("cytube: connecting again in %.1f s", delay)
                try:
                    async with asyncio.timeout(delay):
                        await self._stopping.wait()
                    break
                except TimeoutError:
                    pass
            self._state = ConnectorState.CONNECTING
            refusal = await self._one_session()
            self.backoff.down(loop.time())
            if self._stopping.is_set():
                break
            self._refusal = refusal
            self.counters.reconnects += 1
            log.warning("cytube: %s", refusal.words)
            at_least = refusal.wait or 0.0
            if refusal.fatal:
                self._state = ConnectorState.STOPPED
                return
            if refusal.kind is RefusalKind.KICKED:
                self.counters.kicks += 1
                self._kicks_in_row += 1
                if self._kicks_in_row > self.settings.max_kick_retries:
                    self._refusal = Refusal(
                        RefusalKind.KICKED,
                        f"{refusal.words}; not rejoining after {self._kicks_in_row} kicks in a "
                        f"row (max_kick_retries: {self.settings.max_kick_retries})",
                    )
                    self._state = ConnectorState.STOPPED
                    return
        self._state = ConnectorState.STOPPED

    async def _discover(self) -> str | Refusal:
        url = f"{self.settings.server.rstrip('/')}/socketconfig/{self.settings.channel_key}.json"
        try:
            timeout = aiohttp.ClientTimeout(total=self.settings.step_timeout)
            async with aiohttp.ClientSession(timeout=timeout) as http, http.get(url) as resp:
                if resp.status != 200:
                    return Refusal(RefusalKind.UNREACHABLE, f"{url} answered HTTP {resp.status}")
                body = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            return Refusal(
                RefusalKind.UNREACHABLE, f"cannot reach {url}: {exc or type(exc).__name__}"
            )
        server = pick_socket_server(body)
        if server is None:
            return Refusal(RefusalKind.UNREACHABLE, f"{url} lists no socket server")
        return server

    async def _one_session(self) -> Refusal:
        """Connect, join, log in, then serve until the connection ends; returns why it ended."""
        loop = asyncio.get_running_loop()
        found = await self._discover()
        if isinstance(found, Refusal):
            return found
        sio = socketio.AsyncClient(reconnection=False, logger=False, engineio_logger=False)
        session = _Session(sio, loop)
        self._register(sio, session)
        self.replay.connecting()
        self.backoff.attempt(loop.time())
        step = self.settings.step_timeout
        log.info("cytube: connecting to %s", found)
        try:
            try:
                await sio.connect(found, transports=["websocket"], wait_timeout=step)
            except socketio.exceptions.ConnectionError as exc:
                return refusal_from_connect_error(exc, server=found)
            self._session = session
            join: dict[str, Any] = {"name": self.settings.channel_key}
            if self.settings.channel_password is not None:
                join["pw"] = self.settings.channel_password
            await sio.emit("joinChannel", join)
            joined = await self._await_step(session, session.joined, "join the channel")
            if isinstance(joined, Refusal):
                return joined
            login: dict[str, Any] = {"name": self.settings.username}
            if self.settings.password is not None:
                login["pw"] = self.settings.password
            # Lines stamped from now on are live: the replay may come after the login answer.
            self.replay.begin(time.time() * 1000)
            await sio.emit("login", login)
            answer = await self._await_step(session, session.login, "log in")
            if isinstance(answer, Refusal):
                return answer
            assert isinstance(answer, dict)
            if not answer.get("success"):
                return refusal_from_login(
                    answer.get("error"),
                    username=self.settings.username,
                    account=self.settings.password is not None,
                )
            name = answer.get("name")
            self._name = name if isinstance(name, str) else self.settings.username
            session.up = True
            up_at = loop.time()
            self.backoff.up(up_at)
            self._refusal = None
            self._state = ConnectorState.JOINED
            self.joined.set()
            self._wakeup.set()
            log.info("cytube: joined %s as %s", self.settings.channel_key, self._name)
            ended = await session.done
            if loop.time() - up_at >= self.backoff.stable_after:
                self._kicks_in_row = 0
            return ended or Refusal(
                RefusalKind.DISCONNECTED, "the connection to the server was lost; reconnecting"
            )
        finally:
            self.joined.clear()
            self._session = None
            self.outbox.requeue_in_flight()
            await sio.disconnect()

    async def _await_step(self, session: _Session, step: asyncio.Future[Any], what: str) -> Any:
        """The result of ``step``, or the ``Refusal`` that ended the session first."""
        try:
            async with asyncio.timeout(self.settings.step_timeout):
                await asyncio.wait({step, session.done}, return_when=asyncio.FIRST_COMPLETED)
        except TimeoutError:
            return Refusal(
                RefusalKind.UNREACHABLE,
                f"the server did not let us {what} within {self.settings.step_timeout:g} s",
            )
        if step.done():
            return step.result()
        return session.done.result() or Refusal(
            RefusalKind.DISCONNECTED, f"the server closed the connection before we could {what}"
        )

    # ------------------------------------------------------------------ events in

    def _register(self, sio: socketio.AsyncClient, session: _Session) -> None:
        def on(event: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
            def attach(handler: Callable[..., None]) -> Callable[..., None]:
                sio.on(event, handler)
                return handler

            return attach

        @on("disconnect")
        def _disconnect(reason: object = None) -> None:
            session.finish(None)

        @on("kick")
        def _kick(data: object = None) -> None:
            session.refusal = refusal_from_kick(_get(data, "reason"))

        @on("needPassword")
        def _need_password(data: object = None) -> None:
            session.finish(
                refusal_from_need_password(
                    configured=self.settings.channel_password is not None,
                    channel=self.settings.channel_key,
                )
            )

        @on("errorMsg")
        def _error_msg(data: object = None) -> None:
            msg = _get(data, "msg")
            if isinstance(msg, str) and msg.startswith("PM failed"):
                if self.outbox.answered(pm=True) is not None:
                    self.counters.pm_failed += 1
                return
            refusal = refusal_from_error_msg(msg, channel=self.settings.channel_key)
            if refusal is not None:
                session.refusal = refusal
            else:
                log.info("cytube: server error message: %s", msg)

        @on("login")
        def _login(data: object = None) -> None:
            if not session.login.done() and isinstance(data, dict):
                session.login.set_result(data)

        @on("userlist")
        def _userlist(data: object = None) -> None:
            self.users.replace_all(data if isinstance(data, list) else [])
            if not session.joined.done():
                session.joined.set_result(None)

        @on("addUser")
        def _add_user(data: object = None) -> None:
            user = self.users.add(data) if isinstance(data, Mapping) else None
            if user is not None and session.up and not self._is_me(user.name):
                self._publish(EVENTS_USER_JOIN, self._user_event(user.name))

        @on("userLeave")
        def _user_leave(data: object = None) -> None:
            user = self.users.remove(data) if isinstance(data, Mapping) else None
            if user is not None and session.up and not self._is_me(user.name):
                self._publish(EVENTS_USER_LEAVE, self._user_event(user.name, user.rank))

        @on("setUserRank")
        def _set_user_rank(data: object = None) -> None:
            if isinstance(data, Mapping):
                self.users.set_rank(data)

        @on("rank")
        def _rank(data: object = None) -> None:
            self.limits = self.limits.with_rank(data)
            self.pacer.params = self.limits.params()

        @on("channelOpts")
        def _channel_opts(data: object = None) -> None:
            if isinstance(data, Mapping):
                self.limits = self.limits.with_channel_opts(data)
                self.pacer.params = self.limits.params()

        @on("setPermissions")
        def _set_permissions(data: object = None) -> None:
            chat = _get(data, "chat")
            if isinstance(chat, int | float) and not isinstance(chat, bool):
                self._chat_rank = chat

        @on("chatMsg")
        def _chat_msg(data: object = None) -> None:
            self._on_chat(data, private=False)

        @on("pm")
        def _pm(data: object = None) -> None:
            self._on_chat(data, private=True)

        @on("changeMedia")
        def _change_media(data: object = None) -> None:
            self._on_media(data)

        @on("cooldown")
        def _cooldown(data: object = None) -> None:
            self.counters.cooldowns += 1
            self._refused(data)

        @on("noflood")
        def _noflood(data: object = None) -> None:
            self._refused(None, escalate=True)

        @on("spamFiltered")
        def _spam_filtered(data: object = None) -> None:
            self._refused(None, escalate=True)

    def _is_me(self, name: str) -> bool:
        return name.lower() == self._name.lower()

    def _user_event(self, name: str, rank: int | None = None) -> dict[str, Any]:
        rank = self.users.rank_of(name) if rank is None else rank
        return {
            "platform": self.settings.platform,
            "channel": self.settings.channel_key,
            "user": {"username": name, "rank": rank, "guest": rank < 1},
            "timestamp": time.time(),
        }

    def _on_chat(self, data: object, *, private: bool) -> None:
        if not isinstance(data, Mapping):
            return
        username, msg, stamp = data.get("username"), data.get("msg"), data.get("time")
        if not isinstance(username, str) or not isinstance(msg, str):
            return
        if self._is_me(username):
            # Our own line coming back: the answer to the oldest line in flight (never a command).
            live = private or not self.replay.is_history(stamp)
            if live and self.outbox.answered(pm=private) is not None:
                self.counters.delivered += 1
            return
        if username == SERVER_USER:
            return
        if not private and self.replay.classify(stamp, username, msg) is not Seen.LIVE:
            return
        rank = self.users.rank_of(username)
        body: dict[str, Any] = {
            "id": f"{self.settings.platform}-{self.settings.channel_key}-{next(self._ids)}",
            "platform": self.settings.platform,
            "channel": self.settings.channel_key,
            "user": {"username": username, "rank": rank, "guest": rank < 1},
            "text": incoming_text(msg),
            "html": msg,
            "timestamp": stamp / 1000.0 if isinstance(stamp, int | float) else time.time(),
        }
        if private:
            body["private"] = True
        self._publish(EVENTS_MESSAGE, body)

    def _on_media(self, data: object) -> None:
        if not isinstance(data, Mapping):
            return
        key = (data.get("type"), data.get("id"))
        if key == self._media_id:
            return  # the same video, announced again on a rejoin
        self._media_id = key
        seconds = data.get("seconds")
        self._publish(
            EVENTS_MEDIA_CHANGE,
            {
                "platform": self.settings.platform,
                "channel": self.settings.channel_key,
                "media": {
                    "type": data.get("type"),
                    "id": data.get("id"),
                    "title": data.get("title"),
                    "duration": seconds if isinstance(seconds, int | float) else None,
                },
                "timestamp": time.time(),
            },
        )

    def _publish(self, subject: str, body: dict[str, Any]) -> None:
        try:
            self._events.put_nowait((subject, body))
        except asyncio.QueueFull:
            self.counters.events_dropped += 1

    async def _publisher(self) -> None:
        while True:
            subject, body = await self._events.get()
            try:
                await self.sink.publish_event(subject, body)
            except Exception:  # a sink failure must not end the connector; it is logged
                self.counters.events_dropped += 1
                log.exception("cytube: could not publish %s", subject)

    # ------------------------------------------------------------------ lines out

    def _refused(self, cooldown_ms: object, *, escalate: bool = False) -> None:
        given_up = self.outbox.refused(
            asyncio.get_running_loop().time(), cooldown_ms, escalate=escalate
        )
        if given_up is not None:
            log.warning("cytube: the server refused a line %d times; given up", given_up.attempts)
        self._wakeup.set()

    async def _sender(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._wakeup.clear()
            session = self._session
            if session is None or not session.up or not self.outbox.has_lines():
                await self._wakeup.wait()
                continue
            delay = self.outbox.delay(loop.time())
            if delay > 0:
                # A refusal or a new session while we wait re-decides (wakeup); else the delay.
                try:
                    async with asyncio.timeout(delay):
                        await self._wakeup.wait()
                except TimeoutError:
                    pass
                continue
            line = self.outbox.take(loop.time())
            event, body = line.event
            try:
                await session.sio.emit(event, body)
            except socketio.exceptions.SocketIOError:
                # Gone between the check and the emit: it goes again after the reconnect.
                self.outbox.unsent(line)


def _get(data: object, key: str) -> object:
    return data.get(key) if isinstance(data, Mapping) else None
