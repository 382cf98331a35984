"""A person in a CyTube channel: a python-socketio ``AsyncClient`` that collects what it sees.

The tests drive it through the double (and, later, against the bot): join, log in as a guest or
an account, chat, PM, and wait, with deadlines, for what comes back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import socketio

__all__ = ["Human", "LoginRefused"]


class LoginRefused(Exception):
    def __init__(self, name: str, error: str) -> None:
        super().__init__(f"login as {name!r} refused: {error}")
        self.error = error


class Human:
    """One browser tab: ``events`` keeps every ``(event, data, monotonic time)`` received."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sio = socketio.AsyncClient(reconnection=False)
        self.events: list[tuple[str, Any, float]] = []
        self.name: str | None = None
        self.disconnects = 0
        self._changed = asyncio.Event()
        self.sio.on("*", self._on_any)
        self.sio.on("disconnect", self._on_disconnect)

    async def _on_any(self, event: str, data: Any = None) -> None:
        self.events.append((event, data, time.monotonic()))
        self._changed.set()
        self._changed = asyncio.Event()

    async def _on_disconnect(self, reason: Any = None) -> None:
        self.disconnects += 1
        self._changed.set()
        self._changed = asyncio.Event()

    # ------------------------------------------------------------------ reading

    def of(self, event: str) -> list[Any]:
        """Every payload of ``event`` received so far."""
        return [data for name, data, _ in self.events if name == event]

    def chat(self, username: str | None = None) -> list[str]:
        """The ``msg`` of every ``chatMsg`` seen (from ``username``)."""
        return [
            d["msg"]
            for d in self.of("chatMsg")
            if username is None or d["username"].lower() == username.lower()
        ]

    async def wait_until(self, check: Callable[[], bool], timeout: float, what: str) -> None:
        try:
            async with asyncio.timeout(timeout):
                while not check():
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"not within {timeout:g} s: {what}") from None

    async def wait_for(
        self, event: str, check: Callable[[Any], bool] = lambda _: True, timeout: float = 5.0
    ) -> Any:
        """The first payload of ``event`` received so far, or from now on, that passes ``check``."""
        found: list[Any] = []

        def seen() -> bool:
            found[:] = [d for d in self.of(event) if check(d)]
            return bool(found)

        await self.wait_until(seen, timeout, f"a {event!r} event that passes the check")
        return found[0]

    # ------------------------------------------------------------------ acting

    async def connect(self) -> None:
        await self.sio.connect(self.url, transports=["websocket"], wait_timeout=5)

    async def join(self, channel: str, password: str | None = None) -> None:
        """Join ``channel`` and wait for its ``userlist`` (the end of the join burst)."""
        data: dict[str, Any] = {"name": channel}
        if password is not None:
            data["pw"] = password
        before = len(self.of("userlist"))
        await self.sio.emit("joinChannel", data)
        await self.wait_until(lambda: len(self.of("userlist")) > before, 5, f"joined {channel}")

    async def login(self, name: str, password: str | None = None) -> dict[str, Any]:
        """Log in (as a guest without ``password``); raise ``LoginRefused`` on failure."""
        data: dict[str, Any] = {"name": name}
        if password is not None:
            data["pw"] = password
        before = len(self.of("login"))
        await self.sio.emit("login", data)
        await self.wait_until(lambda: len(self.of("login")) > before, 5, f"login as {name}")
        answer: dict[str, Any] = self.of("login")[before]
        if not answer.get("success"):
            raise LoginRefused(name, answer.get("error", ""))
        self.name = answer["name"]
        # The server follows a successful login with the user's rank.
        await self.wait_until(lambda: self._rank_after_login(), 5, f"rank of {name}")
        return answer

    def _rank_after_login(self) -> bool:
        names = [event for event, _, _ in self.events]
        last_login = len(names) - 1 - names[::-1].index("login")
        return "rank" in names[last_login:]

    async def enter(self, channel: str, name: str, password: str | None = None) -> Human:
        """Connect, join and log in: the usual way in."""
        await self.connect()
        await self.join(channel)
        await self.login(name, password)
        return self

    async def say(self, msg: str) -> None:
        await self.sio.emit("chatMsg", {"msg": msg, "meta": {}})

    async def pm(self, to: str, msg: str) -> None:
        await self.sio.emit("pm", {"to": to, "msg": msg, "meta": {}})

    async def close(self) -> None:
        """Leave (idempotent); returns once python-socketio's tasks have ended."""
        await self.sio.disconnect()
