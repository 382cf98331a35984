"""EventBus against a real nats-server: pub/sub, queue groups, requests, bad messages, reconnect."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from rosey.bus.client import EventBus, Message
from rosey.bus.server import EmbeddedServer
from rosey.errors import BusUnavailable, NoResponders, RequestTimeout
from rosey.protocol import wire


async def _bus(url: str, name: str) -> EventBus:
    bus = EventBus(url, name=name, connect_timeout=3)
    await bus.connect()
    return bus


async def test_publish_subscribe_json_roundtrip(nats_url: str) -> None:
    async with EventBus(nats_url, name="a") as a, EventBus(nats_url, name="b") as b:
        got: asyncio.Queue[Any] = asyncio.Queue()

        async def on(msg: Message) -> None:
            await got.put(msg.json())

        await b.subscribe("t.json", on)
        await b.flush()
        await a.publish("t.json", {"text": "héllo", "n": [1, 2]})
        async with asyncio.timeout(5):
            assert await got.get() == {"text": "héllo", "n": [1, 2]}


async def test_queue_group_delivers_each_message_once(nats_url: str) -> None:
    async with EventBus(nats_url, name="pub") as pub, EventBus(nats_url, name="w") as workers:
        seen: list[tuple[str, int]] = []
        done = asyncio.Event()

        def worker(tag: str) -> Any:
            async def on(msg: Message) -> None:
                seen.append((tag, msg.json()["i"]))
                if len(seen) == 40:
                    done.set()

            return on

        await workers.subscribe("t.q", worker("one"), queue="g")
        await workers.subscribe("t.q", worker("two"), queue="g")
        await workers.flush()
        for i in range(40):
            await pub.publish("t.q", {"i": i})
        async with asyncio.timeout(5):
            await done.wait()
        await pub.flush()
        await workers.flush()
        assert sorted(i for _, i in seen) == list(range(40))


async def test_request_reply_and_its_failures(nats_url: str) -> None:
    async with EventBus(nats_url, name="server") as server, EventBus(nats_url, name="c") as client:

        async def echo(msg: Message) -> None:
            await msg.respond({"echo": msg.json()})

        async def silent(msg: Message) -> None:
            return None

        await server.subscribe("t.echo", echo)
        await server.subscribe("t.silent", silent)
        await server.flush()
        reply = await client.request("t.echo", {"x": 1}, timeout=2)
        assert reply.json() == {"echo": {"x": 1}}
        with pytest.raises(NoResponders, match=r"t\.nobody"):
            await client.request("t.nobody", {}, timeout=2)
        started = time.monotonic()
        with pytest.raises(RequestTimeout, match=r"t\.silent within 0\.3 s"):
            await client.request("t.silent", {}, timeout=0.3)
        assert time.monotonic() - started < 2


async def test_malformed_message_is_counted_and_the_subscription_lives(nats_url: str) -> None:
    async with EventBus(nats_url, name="pub") as pub, EventBus(nats_url, name="sub") as sub:
        good: asyncio.Queue[wire.ChatMessage] = asyncio.Queue()

        async def on(msg: Message) -> None:
            await good.put(wire.parse_chat_message(msg.subject, msg.data))

        async def explode(msg: Message) -> None:
            raise RuntimeError("handler bug")

        await sub.subscribe("rosey.events.message", on)
        await sub.subscribe("t.explode", explode)
        await sub.flush()
        await pub.publish_raw("rosey.events.message", b"\xff not json")
        await pub.publish_raw("rosey.events.message", b"[1, 2]")
        await pub.publish("rosey.events.message", {"id": "1", "platform": "test"})
        await pub.publish_raw("t.explode", b"{}")
        await pub.publish_raw("t.explode", b"{}")
        message = {
            "id": "2",
            "platform": "test",
            "channel": "c",
            "user": {"username": "u", "rank": 0},
            "text": "hi",
            "timestamp": 1.0,
        }
        await pub.publish("rosey.events.message", message)
        async with asyncio.timeout(5):
            assert (await good.get())["text"] == "hi"
        await sub.flush()
        assert sub.stats.bad_messages == 3
        assert sub.stats.handler_errors == 2


async def test_connect_to_a_dead_server_is_bounded() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    bus = EventBus(f"nats://127.0.0.1:{port}", name="x", connect_timeout=1.5)
    started = time.monotonic()
    with pytest.raises(BusUnavailable, match=f"127.0.0.1:{port} within 1.5 s"):
        await bus.connect()
    assert time.monotonic() - started < 5


async def test_reconnects_after_a_server_restart(tmp_path: Path) -> None:
    first = EmbeddedServer(tmp_path / "one")
    await first.start()
    port = first.port
    bus = EventBus(first.url, name="survivor", reconnect_wait=0.1)
    second: EmbeddedServer | None = None
    try:
        await bus.connect()
        got: asyncio.Queue[Any] = asyncio.Queue()

        async def on(msg: Message) -> None:
            await got.put(msg.json())

        await bus.subscribe("t.after", on)
        await bus.flush()
        await first.stop()
        second = EmbeddedServer(tmp_path / "two", port=port)
        await second.start()
        async with asyncio.timeout(10):
            await bus.reconnected.wait()
        async with EventBus(second.url, name="pub") as pub:
            await bus.flush()
            await pub.publish("t.after", {"ok": True})
            async with asyncio.timeout(5):
                assert await got.get() == {"ok": True}
        assert bus.stats.disconnects >= 1
    finally:
        await bus.close()
        await first.stop()
        if second is not None:
            await second.stop()
