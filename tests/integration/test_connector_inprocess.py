"""The connector relay and the router, handing chat lines and replies over in-process.

On a real nats-server, wired as ``rosey.bot`` wires them: one connection with ``no_echo`` shared
by the relay and the router, the relay's ``deliver`` = ``Router.handle``, the router's
``local_sends`` for the connectors' platform = ``ConnectorRelay.send``. The "connector" and the
"plugin" are plain connections of their own that publish on the subjects a connector process
and a plugin process use.

What must hold: a connector's line reaches the router exactly once, stamped with the instance's
platform and channel (the copy on ``rosey.events.message`` for plugins never comes back to the
router); its reply goes to the instance, not through ``rosey.platform.<platform>.send``; a
line that claims another platform or channel, or is malformed, reaches neither the router nor
the plugins and is reported. If the in-process path skipped the stamping, a line claiming the
console's admin would be answered on the console's platform: the test looks there.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from rosey.bus.client import EventBus, Message
from rosey.connectors.instances import Route
from rosey.protocol import subjects, wire
from rosey.router.router import Router
from rosey.security.connector_relay import ConnectorRelay
from rosey.security.violations import Violation

INSTANCE = "cyt"
ROUTE = Route(INSTANCE, "cytube", "chan")
TIMEOUT = 10.0


class Directory:
    """One plugin, ``echo``, answering ``!echo``."""

    def plugin_for(self, command: str) -> str | None:
        return "echo" if command == "echo" else None

    def unavailable_reason(self, plugin: str) -> str | None:
        return None

    def commands(self) -> dict[str, str]:
        return {"echo": "echo"}

    def command_help(self, command: str) -> tuple[str, str] | None:
        return ("says it back", "!echo TEXT") if command == "echo" else None


@dataclass
class Seen:
    """What the observer saw, by subject, in arrival order (one connection: publish order)."""

    by_subject: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def of(self, subject: str) -> list[dict[str, Any]]:
        return self.by_subject.get(subject, [])

    async def wait(self, subject: str, predicate: Any, what: str) -> dict[str, Any]:
        async with asyncio.timeout(TIMEOUT):
            while True:
                found = [b for b in self.of(subject) if predicate(b)]
                if found:
                    return found[0]
                self.changed.clear()
                await self.changed.wait()
        raise AssertionError(what)  # pragma: no cover (the timeout raises first)


@dataclass
class Core:
    router: Router
    relay: ConnectorRelay
    connector: EventBus
    seen: Seen
    violations: list[Violation]

    async def say(self, body: dict[str, Any]) -> None:
        """Publish as the connector process does (its own subject; the broker names it)."""
        await self.connector.publish(f"rosey.plugins.{INSTANCE}.connector.message", body)


WATCHED = (
    subjects.EVENTS_MESSAGE,
    subjects.connector_send(INSTANCE),
    subjects.platform_send("cytube"),
    subjects.platform_send("console"),
)


@pytest.fixture
async def core(nats_url: str) -> AsyncIterator[Core]:
    chat = EventBus(nats_url, name="chat", inbox_prefix=subjects.ROUTER_INBOX_PREFIX, no_echo=True)
    plugin = EventBus(nats_url, name="plugin")
    connector = EventBus(nats_url, name="connector")
    observer = EventBus(nats_url, name="observer")
    for bus in (chat, plugin, connector, observer):
        await bus.connect()
    seen = Seen()

    def keep(subject: str) -> Any:
        async def on(msg: Message) -> None:
            seen.by_subject.setdefault(subject, []).append(json.loads(msg.data))
            seen.changed.set()

        return on

    for subject in WATCHED:
        await observer.subscribe(subject, keep(subject))
    await observer.flush()

    async def echo(msg: Message) -> None:
        request = wire.parse_command_request(msg.subject, msg.data)
        await msg.respond({"ok": True, "text": " ".join(request["args"]), "data": None})

    await plugin.subscribe(subjects.command_execute("echo"), echo, queue="echo")
    await plugin.flush()
    violations: list[Violation] = []
    router = Router(chat, Directory())
    relay = ConnectorRelay(chat, {INSTANCE: ROUTE}, violations.append)
    await relay.start()
    await router.start()
    relay.deliver = router.handle
    for platform in relay.platforms:
        router.local_sends[platform] = relay.send
    try:
        yield Core(router, relay, connector, seen, violations)
    finally:
        await router.stop()
        await relay.stop()
        for bus in (chat, plugin, connector, observer):
            await bus.close()


def line(message_id: str, said: str, **claims: Any) -> dict[str, Any]:
    return {
        "id": message_id,
        "user": {"username": "alice", "rank": 1, "guest": False},
        "text": said,
        "timestamp": 1.0,
        **claims,
    }


def reply_to(message_id: str) -> Any:
    return lambda body: body.get("in_reply_to") == message_id


async def test_a_line_reaches_the_router_once_and_the_reply_goes_to_its_instance(
    core: Core,
) -> None:
    send = subjects.connector_send(INSTANCE)
    await core.say(line("m1", "!echo one"))
    first = await core.seen.wait(send, reply_to("m1"), "the reply to m1")
    assert first == {"channel": "chan", "text": "one", "in_reply_to": "m1"}
    # The plugins' copy, stamped by the core.
    copy = await core.seen.wait(subjects.EVENTS_MESSAGE, lambda b: b["id"] == "m1", "the copy")
    assert (copy["platform"], copy["channel"], copy["text"]) == ("cytube", "chan", "!echo one")
    # A second line answered after the first: had the router also handled the bus copy of m1
    # (no no_echo), its second reply to m1 would have come before this one.
    await core.say(line("m2", "!echo two"))
    await core.seen.wait(send, reply_to("m2"), "the reply to m2")
    assert [b["in_reply_to"] for b in core.seen.of(send)] == ["m1", "m2"]
    assert core.router.handled == 2
    # In-process: nothing went through the platform's bus subject.
    assert core.seen.of(subjects.platform_send("cytube")) == []


async def test_a_private_line_is_answered_privately_through_the_instance(core: Core) -> None:
    send = subjects.connector_send(INSTANCE)
    await core.say(line("p1", "!echo psst", private=True))
    reply = await core.seen.wait(send, reply_to("p1"), "the reply to p1")
    assert (reply["text"], reply["to"]) == ("psst", "alice")


@pytest.mark.parametrize(
    ("claims", "why"),
    [
        # The console's admin on the console: answered there if the stamping were skipped.
        (
            {
                "platform": "console",
                "channel": "console",
                "user": {"username": "console", "rank": 100},
            },
            "claimed platform 'console'",
        ),
        ({"channel": "otherchan"}, "claimed channel 'otherchan'"),
        ({"text": ["!echo", "forged"]}, "'text' must be str"),
        ({"user": {"username": "alice", "rank": "root"}}, "'user.rank' must be an integer"),
    ],
)
async def test_a_forged_or_malformed_line_reaches_no_one_and_is_reported(
    core: Core, claims: dict[str, Any], why: str
) -> None:
    send = subjects.connector_send(INSTANCE)
    await core.say(line("forged", "!echo forged", **claims))
    # An honest line after it: once its reply is here, the forged one was handled (in order).
    await core.say(line("honest", "!echo honest"))
    await core.seen.wait(send, reply_to("honest"), "the honest reply")
    assert [v.plugin for v in core.violations] == [INSTANCE]
    assert core.violations[0].kind == "forged"
    assert why in core.violations[0].detail
    assert core.router.handled == 1
    for subject in WATCHED:
        assert not [b for b in core.seen.of(subject) if "forged" in json.dumps(b)], subject


async def test_a_send_from_the_bus_is_forwarded_as_it_came(core: Core) -> None:
    """A plugin with ``chat.send`` (another connection) still reaches the instance."""
    body = {"channel": "chan", "text": "announcement", "in_reply_to": None}
    await core.connector.publish(subjects.platform_send("cytube"), body)
    forwarded = await core.seen.wait(
        subjects.connector_send(INSTANCE), lambda b: b["text"] == "announcement", "forwarded"
    )
    assert forwarded == body
