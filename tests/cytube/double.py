"""A CyTube server double: python-socketio ``AsyncServer`` on aiohttp, on 127.0.0.1.

It behaves like CyTube 3.x where a bot depends on it (../shared/cytube.md): socket server
discovery (``GET /socketconfig/<channel>.json``), ``joinChannel`` (with channel passwords),
``login`` as guest or account and its refusals, ranks, the user list and its broadcasts, the last
15 chat lines replayed on join, HTML escaping and link wrapping, truncation in UTF-16 code units,
the flood limiter with ``cooldown``, PMs echoed to the sender, kicks, media changes, the
per-address connection throttle and the engine.io ping settings. Limits that make tests slow
(guest login delay, connection throttle, pings) are parameters.

The test process owns the object: hooks (``kick``, ``change_media``, ``set_rank``, ``mute``,
``server_say``, ``stop``/``start``) are plain methods, and what the server did is kept for the test
to read (``chat``, ``pms``, ``cooldowns``, ``users()``), with ``wait_until`` to wait on it.

What it does not model is listed in docs/connectors.md.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import socketio
from aiohttp import web

from cytube.rules import FloodLimiter, TokenBucket, process_msg, valid_channel, valid_username

__all__ = ["ChatLine", "CytubeDouble", "Pm"]

HISTORY = 15
INVALID_CHANNEL = (
    "Invalid channel name.  Channel names may consist of 1-30 characters in the set a-z, A-Z, "
    "0-9, -, and _"
)
INVALID_USERNAME = (
    "Invalid username.  Usernames must be 1-20 characters long and consist only of characters "
    "a-z, A-Z, 0-9, -, _, and accented letters."
)
NAME_REGISTERED = "That username is registered."
NAME_IN_USE = "That name is already in use on this channel."
BAD_PASSWORD = "Invalid username/password combination"
RESERVED = "That username is reserved."  # wording not observed: the double's own
BANNED = "You're banned!"


@dataclass
class ChatLine:
    """One ``chatMsg`` the server broadcast (in the channel's history too)."""

    channel: str
    username: str
    msg: str
    meta: dict[str, Any]
    time: int  # ms since the epoch, server clock

    def event(self) -> dict[str, Any]:
        return {"username": self.username, "msg": self.msg, "meta": self.meta, "time": self.time}


@dataclass
class Pm:
    """One ``pm`` the server delivered (to the recipient and echoed to the sender)."""

    username: str
    to: str
    msg: str
    time: int


@dataclass
class _Socket:
    sid: str
    ip: str
    name: str | None = None
    rank: int = -1
    guest: bool = False
    channel: str | None = None
    limiter: FloodLimiter = field(default_factory=lambda: FloodLimiter(20, 10.0))


@dataclass
class _Channel:
    name: str
    password: str | None = None
    opts: dict[str, Any] = field(
        default_factory=lambda: {
            "chat_antiflood": False,
            "chat_antiflood_params": {"burst": 4, "sustained": 1, "cooldown": 4},
            "enable_link_regex": True,
        }
    )
    permissions: dict[str, float] = field(default_factory=lambda: {"chat": 0, "chatclear": 2})
    history: collections.deque[ChatLine] = field(
        default_factory=lambda: collections.deque(maxlen=HISTORY)
    )
    media: dict[str, Any] | None = None
    muted: set[str] = field(default_factory=set)


def _discard(data: object) -> None:
    """A frozen connection's writes go nowhere."""


def _now_ms() -> int:
    return int(time.time() * 1000)


class CytubeDouble:
    """One CyTube server (any number of channels, created when first joined)."""

    def __init__(
        self,
        *,
        accounts: Mapping[str, tuple[str, int]] | None = None,
        channel_passwords: Mapping[str, str] | None = None,
        banned: set[str] | None = None,
        reserved: set[str] | None = None,
        ranks: Mapping[str, int] | None = None,
        guest_login_delay: float = 0.0,
        connect_burst: float = 1000.0,
        connect_refill: float = 0.0,
        max_sockets_per_ip: int = 10,
        ping_interval: float = 25.0,
        ping_timeout: float = 120.0,
        max_length: int = 320,
        secure: bool = True,
        replay_after_login: bool = False,
    ) -> None:
        #: Registered accounts: name → (password, channel rank).
        self.accounts = {k.lower(): v for k, v in (accounts or {}).items()}
        self.channel_passwords = dict(channel_passwords or {})
        self.banned = {n.lower() for n in banned or set()}
        self.reserved = {n.lower() for n in reserved or set()}
        #: Channel ranks given to accounts beyond their default (name → rank).
        self.ranks = {k.lower(): v for k, v in (ranks or {}).items()}
        self.guest_login_delay = guest_login_delay
        self.connect_burst, self.connect_refill = connect_burst, connect_refill
        self.max_sockets_per_ip = max_sockets_per_ip
        self.ping_interval, self.ping_timeout = ping_interval, ping_timeout
        self.max_length = max_length
        #: Whether socketconfig lists a live ``secure: true`` entry (and a dead non-secure one),
        #: or only a live non-secure entry.
        self.secure = secure
        #: Replay history when a socket logs in rather than when it joins (a registered channel
        #: being loaded after a restart).
        self.replay_after_login = replay_after_login

        self.port = 0
        self.channels: dict[str, _Channel] = {}
        self.chat: list[ChatLine] = []
        self.pms: list[Pm] = []
        self.cooldowns: list[tuple[str, float]] = []
        self.nofloods: list[str] = []
        self.commands: list[tuple[str, str]] = []
        self.refused_connects = 0
        self.connects = 0
        self._sockets: dict[str, _Socket] = {}
        self._buckets: dict[str, TokenBucket] = {}
        self._guest_logins: dict[str, float] = {}
        self._sio: socketio.AsyncServer | None = None
        self._runner: web.AppRunner | None = None
        self._changed = asyncio.Event()
        self._transports: set[asyncio.Transport] = set()

    # ------------------------------------------------------------------ lifecycle

    @web.middleware
    async def _track(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Remember each connection's transport, so that ``stop`` can drop it like a crash."""
        if request.transport is not None:
            self._transports = {t for t in self._transports if not t.is_closing()}
            self._transports.add(request.transport)
        return await handler(request)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Listen on 127.0.0.1 (a free port the first time, the same port after ``stop``)."""
        sio = socketio.AsyncServer(
            async_mode="aiohttp",
            ping_interval=self.ping_interval,
            ping_timeout=self.ping_timeout,
            max_http_buffer_size=1 << 20,
            logger=False,
            engineio_logger=False,
        )
        app = web.Application(middlewares=[self._track])
        sio.attach(app)
        app.router.add_get("/socketconfig/{channel}.json", self._socketconfig)
        self._register(sio)
        runner = web.AppRunner(app, shutdown_timeout=0.2, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        self.port = int(runner.addresses[0][1])
        self._sio, self._runner = sio, runner

    async def stop(self) -> None:
        """Stop as a crashed or restarted server does: connections drop, no goodbye.

        Users and per-address limits are forgotten (they live in the server's memory); channel
        history, options and media stay (CyTube saves them with the channel).
        """
        sio, runner = self._sio, self._runner
        self._sio, self._runner = None, None
        # Abort every TCP connection first: a crashed server says no goodbye (no websocket close
        # frame, no socket.io disconnect), so clients must notice by themselves.
        for transport in list(self._transports):
            transport.abort()
        self._transports.clear()
        self._sockets.clear()
        self._buckets.clear()
        self._guest_logins.clear()
        if sio is not None:
            await sio.shutdown()
        if runner is not None:
            await runner.cleanup()
        self._pulse()

    async def __aenter__(self) -> CytubeDouble:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ observing

    def _pulse(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_until(self, check: Callable[[], bool], timeout: float, what: str) -> None:
        """Wait until ``check()`` holds (re-checked on every change); ``AssertionError`` names
        ``what`` after ``timeout`` s."""
        try:
            async with asyncio.timeout(timeout):
                while not check():
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"not within {timeout:g} s: {what}") from None

    def open_sockets(self) -> int:
        """How many sockets are connected (in a channel or not, logged in or not)."""
        return len(self._sockets)

    def users(self, channel: str) -> dict[str, int]:
        """Who is in ``channel`` (logged in), with their rank."""
        return {
            s.name: s.rank
            for s in self._sockets.values()
            if s.channel == channel.lower() and s.name is not None
        }

    def lines(self, channel: str, username: str | None = None) -> list[str]:
        """The ``msg`` of every line broadcast in ``channel`` (by ``username``)."""
        return [
            c.msg
            for c in self.chat
            if c.channel == channel.lower()
            and (username is None or c.username.lower() == username.lower())
        ]

    def channel(self, name: str) -> _Channel:
        name = name.lower()
        if name not in self.channels:
            self.channels[name] = _Channel(name, password=self.channel_passwords.get(name))
        return self.channels[name]

    # ------------------------------------------------------------------ test hooks

    async def kick(self, name: str, reason: str = "Kicked by a moderator") -> None:
        """A moderator kicks ``name``: ``kick`` {reason}, then the socket is disconnected."""
        sock = self._by_name(name)
        if sock is not None and self._sio is not None:
            await self._sio.emit("kick", {"reason": reason}, to=sock.sid)
            await self._sio.disconnect(sock.sid)

    async def change_media(
        self, channel: str, media_id: str, title: str, seconds: int, media_type: str = "yt"
    ) -> None:
        """The channel's video changes: ``changeMedia`` to everyone in it."""
        minutes, secs = divmod(seconds, 60)
        media = {
            "id": media_id,
            "title": title,
            "seconds": seconds,
            "duration": f"{minutes:02d}:{secs:02d}",
            "type": media_type,
            "meta": {},
            "currentTime": 0,
            "paused": False,
        }
        self.channel(channel).media = media
        await self._broadcast(channel, "changeMedia", media)

    async def set_rank(self, channel: str, name: str, rank: int) -> None:
        """Someone's rank changes: ``rank`` to them, ``setUserRank`` to everyone."""
        sock = self._by_name(name, channel)
        if sock is None or self._sio is None:
            return
        sock.rank = rank
        await self._sio.emit("rank", rank, to=sock.sid)
        await self._broadcast(channel, "setUserRank", {"name": sock.name, "rank": rank})

    async def set_opts(self, channel: str, **opts: Any) -> None:
        """Channel options change (e.g. ``chat_antiflood``): ``channelOpts`` to everyone."""
        chan = self.channel(channel)
        chan.opts.update(opts)
        await self._broadcast(channel, "channelOpts", chan.opts)

    def freeze(self) -> None:
        """The network path to every open connection goes silent: nothing in, nothing out, and
        no close either (a dead router, a suspended laptop). Only liveness notices that; new
        connections work as before.
        """
        for transport in self._transports:
            if not transport.is_closing():
                transport.pause_reading()
                transport.write = _discard  # type: ignore[method-assign]
                transport.writelines = _discard  # type: ignore[method-assign, assignment]

    def mute(self, channel: str, name: str) -> None:
        self.channel(channel).muted.add(name.lower())

    async def server_say(self, channel: str, msg: str) -> None:
        """A line from the server itself (username ``[server]``)."""
        await self._chat(self.channel(channel), "[server]", msg, {})

    # ------------------------------------------------------------------ the protocol

    async def _socketconfig(self, request: web.Request) -> web.Response:
        if self.secure:
            servers = [
                {"url": "http://127.0.0.1:1", "secure": False},  # a dead end: prefer secure
                {"url": self.url, "secure": True},
            ]
        else:
            servers = [{"url": self.url, "secure": False}]
        return web.json_response({"servers": servers})

    def _register(self, sio: socketio.AsyncServer) -> None:
        sio.on("connect", self._on_connect)
        sio.on("disconnect", self._on_disconnect)
        sio.on("joinChannel", self._on_join)
        sio.on("login", self._on_login)
        sio.on("chatMsg", self._on_chat)
        sio.on("pm", self._on_pm)

    def _by_name(self, name: str, channel: str | None = None) -> _Socket | None:
        for sock in self._sockets.values():
            same = sock.name is not None and sock.name.lower() == name.lower()
            if same and (channel is None or sock.channel == channel.lower()):
                return sock
        return None

    async def _emit(self, event: str, data: Any, sid: str) -> None:
        if self._sio is not None:
            await self._sio.emit(event, data, to=sid)

    async def _broadcast(self, channel: str, event: str, data: Any) -> None:
        if self._sio is not None:
            await self._sio.emit(event, data, room=f"chan:{channel.lower()}")

    async def _on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        request = environ.get("aiohttp.request")
        ip = request.remote if request is not None and request.remote else "127.0.0.1"
        bucket = self._buckets.setdefault(ip, TokenBucket(self.connect_burst, self.connect_refill))
        open_here = sum(1 for s in self._sockets.values() if s.ip == ip)
        if open_here >= self.max_sockets_per_ip or not bucket.take(time.monotonic()):
            self.refused_connects += 1
            self._pulse()
            raise socketio.exceptions.ConnectionRefusedError("too many connections")
        self.connects += 1
        self._sockets[sid] = _Socket(sid, ip)
        await self._emit("rank", -1, sid)
        self._pulse()

    async def _on_disconnect(self, sid: str, reason: Any = None) -> None:
        sock = self._sockets.pop(sid, None)
        if sock is not None and sock.channel is not None and sock.name is not None:
            await self._broadcast(sock.channel, "userLeave", {"name": sock.name})
            await self._usercount(sock.channel)
        self._pulse()

    def _user_entry(self, sock: _Socket) -> dict[str, Any]:
        muted = (
            sock.channel is not None
            and (sock.name or "").lower() in self.channel(sock.channel).muted
        )
        return {
            "name": sock.name,
            "rank": sock.rank,
            "profile": {"image": "", "text": ""},
            "meta": {"afk": False, "muted": muted, "smuted": False},
        }

    async def _usercount(self, channel: str) -> None:
        count = sum(1 for s in self._sockets.values() if s.channel == channel)
        await self._broadcast(channel, "usercount", count)

    async def _on_join(self, sid: str, data: Any) -> None:
        sock = self._sockets.get(sid)
        if sock is None or sock.channel is not None or self._sio is None:
            return
        name = data.get("name") if isinstance(data, dict) else None
        if not valid_channel(name):
            await self._emit("errorMsg", {"msg": INVALID_CHANNEL}, sid)
            await self._emit("kick", {"reason": "Invalid channel name"}, sid)
            await self._sio.disconnect(sid)
            return
        assert isinstance(name, str)
        chan = self.channel(name)
        if chan.password is not None and data.get("pw") != chan.password:
            await self._emit("needPassword", "pw" in data, sid)
            return
        if sock.name is not None and sock.name.lower() in self.banned:
            await self.kick(sock.name, BANNED)
            return
        sock.channel = chan.name
        await self._sio.enter_room(sid, f"chan:{chan.name}")
        await self._emit("setPermissions", chan.permissions, sid)
        await self._emit("emoteList", [], sid)
        if not (self.replay_after_login and sock.name is None):
            await self._replay(chan, sid)
        await self._emit("setMotd", "", sid)
        await self._emit("channelOpts", chan.opts, sid)
        await self._emit("playlist", [], sid)
        if chan.media is not None:
            await self._emit("changeMedia", chan.media, sid)
        others = [s for s in self._sockets.values() if s.channel == chan.name and s.name]
        await self._emit("userlist", [self._user_entry(s) for s in others], sid)
        if sock.name is not None:
            await self._sio.emit(
                "addUser", self._user_entry(sock), room=f"chan:{chan.name}", skip_sid=sid
            )
        await self._usercount(chan.name)
        await self._emit("channelNotRegistered", None, sid)
        self._pulse()

    async def _replay(self, chan: _Channel, sid: str) -> None:
        for line in list(chan.history):
            await self._emit("chatMsg", line.event(), sid)

    async def _on_login(self, sid: str, data: Any) -> None:
        sock = self._sockets.get(sid)
        if sock is None or sock.name is not None or not isinstance(data, dict):
            return
        name, pw = data.get("name"), data.get("pw")
        error = self._login_error(sock, name, pw)
        if error is not None:
            await self._emit("login", {"success": False, "error": error}, sid)
            self._pulse()
            return
        assert isinstance(name, str)
        account = self.accounts.get(name.lower())
        if account is not None:
            sock.name, sock.guest = name, False
            sock.rank = self.ranks.get(name.lower(), account[1])
            await self._emit("login", {"success": True, "name": name}, sid)
        else:
            self._guest_logins[sock.ip] = time.monotonic()
            sock.name, sock.guest, sock.rank = name, True, 0
            await self._emit("login", {"success": True, "name": name, "guest": True}, sid)
        await self._emit("rank", sock.rank, sid)
        if sock.channel is not None:
            if sock.name.lower() in self.banned:
                await self.kick(sock.name, BANNED)
                return
            if self.replay_after_login:
                await self._replay(self.channel(sock.channel), sid)
            await self._broadcast(sock.channel, "addUser", self._user_entry(sock))
        self._pulse()

    def _login_error(self, sock: _Socket, name: object, pw: object) -> str | None:
        if not valid_username(name):
            return INVALID_USERNAME
        assert isinstance(name, str)
        if name.lower() in self.reserved:
            return RESERVED
        account = self.accounts.get(name.lower())
        if account is not None and pw is None:
            return NAME_REGISTERED
        if account is not None and pw != account[0]:
            return BAD_PASSWORD
        if sock.channel is not None and self._by_name(name, sock.channel) is not None:
            return NAME_IN_USE
        if account is None and self.guest_login_delay > 0:
            last = self._guest_logins.get(sock.ip)
            if last is not None and time.monotonic() - last < self.guest_login_delay:
                return (
                    "Guest logins are restricted to one per IP address per "
                    f"{self.guest_login_delay:g} seconds."
                )
        return None

    def _flood_ok(self, sock: _Socket, chan: _Channel) -> tuple[bool, float]:
        """Apply the limiter; returns (accepted, the ``cooldown`` ms to report if not)."""
        params = chan.opts.get("chat_antiflood_params") or {}
        if chan.opts.get("chat_antiflood") and sock.rank < 2:
            burst, sustained = int(params.get("burst", 4)), float(params.get("sustained", 1))
        else:
            burst, sustained = 20, 10.0
        return sock.limiter.allow(time.monotonic(), burst, sustained), 1000.0 / sustained

    async def _check_send(self, sock: _Socket) -> _Channel | None:
        """The channel a socket may chat in now (limiter, mute and permission applied)."""
        if sock.channel is None or sock.name is None:
            return None
        chan = self.channel(sock.channel)
        if sock.rank < chan.permissions.get("chat", 0):
            return None
        if sock.name.lower() in chan.muted:
            self.nofloods.append(sock.name)
            await self._emit(
                "noflood",
                {"action": "chat", "msg": "You have been muted on this channel."},
                sock.sid,
            )
            self._pulse()
            return None
        ok, cooldown = self._flood_ok(sock, chan)
        if not ok:
            self.cooldowns.append((sock.name, cooldown))
            await self._emit("cooldown", cooldown, sock.sid)
            self._pulse()
            return None
        return chan

    async def _on_chat(self, sid: str, data: Any) -> None:
        sock = self._sockets.get(sid)
        if sock is None or not isinstance(data, dict) or not isinstance(data.get("msg"), str):
            return
        chan = await self._check_send(sock)
        if chan is None or sock.name is None:
            return
        raw: str = data["msg"]
        meta: dict[str, Any] = {}
        if raw.strip().startswith("/"):
            # A server command, never broadcast as typed. /me is an action line; the rest are
            # taken in and not shown (the double does not carry them out).
            command, _, rest = raw.strip().partition(" ")
            self.commands.append((sock.name, raw))
            if command != "/me":
                self._pulse()
                return
            raw, meta = rest, {"addClass": "action", "action": True}
        elif raw.startswith(">"):
            meta = {"addClass": "greentext"}
        msg = process_msg(
            raw, limit=self.max_length, wrap_links=bool(chan.opts.get("enable_link_regex"))
        )
        await self._chat(chan, sock.name, msg, meta)

    async def _chat(self, chan: _Channel, username: str, msg: str, meta: dict[str, Any]) -> None:
        line = ChatLine(chan.name, username, msg, meta, _now_ms())
        chan.history.append(line)
        self.chat.append(line)
        await self._broadcast(chan.name, "chatMsg", line.event())
        self._pulse()

    async def _on_pm(self, sid: str, data: Any) -> None:
        sock = self._sockets.get(sid)
        if sock is None or not isinstance(data, dict) or not isinstance(data.get("msg"), str):
            return
        to = data.get("to")
        if not isinstance(to, str):
            return
        chan = await self._check_send(sock)
        if chan is None or sock.name is None:
            return
        target = self._by_name(to, chan.name)
        if target is None:
            await self._emit(
                "errorMsg", {"msg": f"PM failed: {to} isn't connected to this channel."}, sid
            )
            self._pulse()
            return
        assert target.name is not None
        msg = process_msg(data["msg"], limit=self.max_length, wrap_links=True)
        pm = Pm(sock.name, target.name, msg, _now_ms())
        self.pms.append(pm)
        body = {"username": sock.name, "msg": msg, "meta": {}, "time": pm.time, "to": target.name}
        await self._emit("pm", body, target.sid)
        if target.sid != sid:
            await self._emit("pm", body, sid)
        self._pulse()
