"""The router's bounds, with a bus that never answers one plugin (no I/O: a fake bus).

Regression for issue 10: 2 000 commands to a plugin that never answered held up every
command, ``!plugin`` included (one semaphore for all, taken before the task started), and a
reply nested 100 000 deep killed the command's task: no reply, no outcome.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, cast

from rosey.bus.client import EventBus, Message
from rosey.errors import RequestTimeout
from rosey.protocol import wire
from rosey.router.parse import ParsedCommand
from rosey.router.router import Caller, Router

BOUND = 5


class Directory:
    def plugin_for(self, command: str) -> str | None:
        return {"hang": "slow", "roll": "dice", "deep": "deep"}.get(command)

    def unavailable_reason(self, plugin: str) -> str | None:
        return None

    def commands(self) -> dict[str, str]:
        return {"hang": "slow", "roll": "dice", "deep": "deep"}

    def command_help(self, command: str) -> tuple[str, str] | None:
        return None


class FakeBus:
    """Replies for ``dice`` and ``deep``; ``slow`` hangs until released (then times out)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.release = asyncio.Event()
        #: Set when the reply to the chat message with id "r" is sent.
        self.r_answered = asyncio.Event()

    async def publish(self, subject: str, body: Any, *, reply: str = "") -> None:
        self.sent.append((subject, body))
        if subject.endswith(".send") and body["in_reply_to"] == "r":
            self.r_answered.set()

    async def request(self, subject: str, body: Any, *, timeout: float) -> Message:
        if subject == "rosey.commands.slow.execute":
            await self.release.wait()
            raise RequestTimeout(subject, timeout)
        if subject == "rosey.commands.deep.execute":
            data = b'{"ok":true,"text":"x","data":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
        else:
            data = wire.encode({"ok": True, "text": "4", "data": None, "error": None})
        return Message(subject, data, "", cast(EventBus, self))

    def texts(self, message_id: str) -> list[str]:
        return [
            b["text"]
            for s, b in self.sent
            if s.endswith(".send") and b["in_reply_to"] == message_id
        ]

    def outcomes(self, plugin: str) -> list[str]:
        return [s for s, _ in self.sent if s.startswith(f"rosey.commands.{plugin}.")]


def chat(message_id: str, text: str) -> Message:
    body = {
        "id": message_id,
        "platform": "test",
        "channel": "room",
        "user": {"username": "ann", "rank": 0},
        "text": text,
    }
    return Message("rosey.events.message", json.dumps(body).encode(), "", cast(EventBus, None))


async def test_a_plugin_that_never_answers_fills_only_its_own_bound() -> None:
    bus = FakeBus()
    router = Router(cast(EventBus, bus), Directory(), max_in_flight_per_plugin=BOUND)
    plugin_waits = asyncio.Event()

    async def plugin_builtin(parsed: ParsedCommand, caller: Caller) -> list[str]:
        await plugin_waits.wait()
        return ["listed"]

    router.builtins["plugin"] = plugin_builtin
    for i in range(50):
        await router._on_message(chat(f"h{i}", "!hang"))
    for i in range(BOUND + 1):
        await router._on_message(chat(f"p{i}", "!plugin list"))
    await router._on_message(chat("r", "!roll"))
    async with asyncio.timeout(5):
        await bus.r_answered.wait()  # created last: the others have reached their wait

    busy = [i for i in range(50) if bus.texts(f"h{i}") == ["!hang: busy, try again in a moment"]]
    assert busy == list(range(BOUND, 50))
    assert bus.texts(f"p{BOUND}") == ["!plugin: busy, try again in a moment"]
    assert bus.texts("r") == ["4"]
    assert bus.outcomes("dice") == ["rosey.commands.dice.result"]
    assert router.refused_busy == 50 - BOUND + 1

    # Once they end, there is room again; busy refusals published no outcome.
    plugin_waits.set()
    bus.release.set()
    await router.stop(timeout=5)
    assert bus.outcomes("slow") == ["rosey.commands.slow.error"] * BOUND
    assert router._in_flight == {}
    assert [bus.texts(f"p{i}") for i in range(BOUND)] == [["listed"]] * BOUND


async def test_a_reply_nested_too_deep_is_an_error_reply_and_an_error_outcome() -> None:
    bus = FakeBus()
    router = Router(cast(EventBus, bus), Directory())
    await router._on_message(chat("d", "!deep"))
    await router.stop(timeout=5)
    assert bus.texts("d") == [
        "!deep: deep gave no usable answer (body nests deeper than 64 levels)"
    ]
    ((subject, outcome),) = [(s, b) for s, b in bus.sent if s.startswith("rosey.commands.deep.")]
    assert subject == "rosey.commands.deep.error"
    assert outcome["error"] == "unusable reply: body nests deeper than 64 levels"
