"""The console connector: a terminal as a chat network (platform ``console``)."""

from __future__ import annotations

import asyncio
import itertools
import sys
import time
from typing import TextIO

from rosey.bus.client import EventBus, Message, Subscription
from rosey.protocol import subjects, wire

PLATFORM = "console"


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
        for line in body["text"].splitlines() or [""]:
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
