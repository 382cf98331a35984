"""The core's call relay on a real server: who the callee hears, refusals, and the bound."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from helpers import eventually
from rosey.bus.client import EventBus, Message
from rosey.protocol import subjects, wire
from rosey.security.relay import CallRelay

CALL: wire.CommandRequest = {
    "command": "whoami",
    "args": ["x"],
    "text": "!whoami x",
    "user": {"username": "console", "rank": 100},
    "channel": "console",
    "platform": "console",
    "correlation_id": "c1",
}


@pytest.fixture
async def bus(nats_url: str) -> AsyncIterator[EventBus]:
    async with EventBus(nats_url, name="core", inbox_prefix=subjects.ROUTER_INBOX_PREFIX) as bus:
        yield bus


async def _call(bus: EventBus, caller: str, callee: str, timeout: float = 5) -> dict[str, Any]:
    reply = await bus.request(subjects.relay(caller, callee), CALL, timeout=timeout)
    body: dict[str, Any] = json.loads(reply.data)
    return body


async def test_the_callee_hears_the_caller_the_core_names(bus: EventBus) -> None:
    heard: list[wire.CommandRequest] = []

    async def callee(msg: Message) -> None:
        request = wire.parse_command_request(msg.subject, msg.data)
        heard.append(request)
        await msg.respond({"ok": True, "text": "hi", "data": None, "error": None})

    await bus.subscribe(subjects.command_execute("b"), callee)
    relay = CallRelay(bus, lambda caller, callee: (caller, callee) == ("a", "b"), timeout=2)
    await relay.start()
    try:
        assert (await _call(bus, "a", "b"))["text"] == "hi"
        assert heard[0]["user"] == {"username": "a", "rank": 0}
        assert (heard[0]["platform"], heard[0]["channel"]) == ("plugin", "")
        assert (heard[0]["command"], heard[0]["args"]) == ("whoami", ["x"])
        refused = await _call(bus, "c", "b")
        assert refused["ok"] is False
        assert "not granted plugins.call:b" in refused["error"]
        assert len(heard) == 1
    finally:
        await relay.stop()


async def test_a_missing_callee_and_a_flooding_caller_get_answers_not_silence(
    bus: EventBus,
) -> None:
    release = asyncio.Event()
    answering: set[asyncio.Task[None]] = set()

    async def slow(msg: Message) -> None:
        await release.wait()
        await msg.respond({"ok": True, "text": "late", "data": None, "error": None})

    async def deliver_later(msg: Message) -> None:
        answering.add(asyncio.create_task(slow(msg)))

    await bus.subscribe(subjects.command_execute("slow"), deliver_later)
    relay = CallRelay(bus, lambda *_: True, timeout=5, max_in_flight=2)
    await relay.start()
    try:
        missing = await _call(bus, "a", "nobody")
        assert missing == {
            "ok": False,
            "text": None,
            "data": None,
            "error": "plugin nobody is not running",
        }
        pending = [asyncio.ensure_future(_call(bus, "a", "slow")) for _ in range(2)]

        async def both_waiting() -> bool:
            return relay.in_flight("a") == 2

        await eventually(both_waiting, 5, "two calls of a in flight in the relay")
        busy = await _call(bus, "a", "slow")
        assert busy["ok"] is False
        assert "2 calls in flight" in busy["error"]
        # Another caller is not held up by the first one's flood.
        other = asyncio.ensure_future(_call(bus, "b", "slow"))
        release.set()
        assert [(await p)["text"] for p in pending] == ["late", "late"]
        assert (await other)["text"] == "late"
        assert relay.relayed == 3
        assert relay.in_flight("a") == 0
    finally:
        release.set()
        await relay.stop()
        await asyncio.gather(*answering, return_exceptions=True)
