"""The console connector: a terminal as a chat network (platform ``console``).

What it prints comes from the bus: plugin replies, and anything a plugin with ``chat.send``
publishes on ``rosey.platform.console.send`` without passing the router. So every line is
cleaned here (``rosey.protocol.text.clean``), whatever cleaned it before: an escape sequence
would act on the operator's terminal (title, screen, clipboard); and one message shows at most
``MAX_LINES`` lines of ``MAX_CHARS`` characters in all (``rosey.router.split.chunk``).
"""

from __future__ import annotations

import asyncio
import itertools
import sys
import time
from typing import TextIO

from rosey.bus.client import EventBus, Message, Subscription
from rosey.protocol import subjects, wire
from rosey.router.split import chunk

PLATFORM = "console"
#: One message on the terminal at most (a terminal takes more than a chat network).
MAX_CHARS = 8000
MAX_LINES = 100


class ConsoleConnector:
    """Reads lines from stdin, prints what the bot says on the console platform."""

    def __init__(
        self, bus: EventBus, *, username: str = "console", out: TextIO | None = None
    ) -> None:
        self.bus = bus
        self.username = username
        self.out = out or sys.stdout
        self._ids = itertools.count(1)
        self._subscription: Subscription | None = None

    async def start(self) -> None:
        self._subscription = await self.bus.subscribe(
            subjects.platform_send(PLATFORM), self._on_send
        )
        await self.bus.flush()

    async def stop(self) -> None:
        if self._subscription is not None:
            await self._subscription.unsubscribe()

    async def _on_send(self, msg: Message) -> None:
        body = wire.parse_send_message(msg.subject, msg.data)
        shown = chunk(
            body["text"].split("\n"), max_chars=MAX_CHARS, max_lines=MAX_LINES, max_messages=1
        )
        for line in shown[0].split("\n"):
            self.out.write(f"rosey> {line}\n")
        self.out.flush()

    async def say(self, text: str) -> None:
        """Publish one line as if typed at the console."""
        message: wire.ChatMessage = {
            "id": f"console-{next(self._ids)}",
            "platform": PLATFORM,
            "channel": PLATFORM,
            "user": {"username": self.username, "rank": 100},
            "text": text,
            "timestamp": time.time(),
        }
        await self.bus.publish(subjects.EVENTS_MESSAGE, message)

    async def read_stdin(self) -> None:
        """Feed stdin lines to the bus until end of file (Ctrl-D)."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), sys.stdin
        )
        try:
            self.out.write(
                "Rosey console: type !help, !roll 2d6, !plugin list; Ctrl-D or Ctrl-C quits.\n"
            )
            self.out.flush()
            while line := await reader.readline():
                text = line.decode("utf-8", "replace").strip()
                if text:
                    await self.say(text)
        finally:
            transport.close()
