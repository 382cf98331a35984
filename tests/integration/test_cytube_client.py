"""The CyTube connector's client against the CyTube double (no bot, no NATS).

The double imitates the server (tests/integration/test_cytube_double.py keeps it honest);
``Sink`` stands in for the process wrapper that will publish the client's events on the bus.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import pytest

from cytube.double import CytubeDouble
from cytube.kit import World
from helpers import eventually
from rosey.connectors.cytube.client import (
    EVENTS_MEDIA_CHANGE,
    EVENTS_MESSAGE,
    EVENTS_USER_JOIN,
    EVENTS_USER_LEAVE,
    ConnectorState,
    CytubeClient,
)
from rosey.connectors.cytube.policy import Backoff, RefusalKind
from rosey.connectors.cytube.settings import CytubeSettings
from rosey.connectors.cytube.text import COMMAND_GUARD

CHAN = "testchan"
BOT = "RoseyBot"


class Sink:
    """Collects what the client would publish on the bus."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self._changed = asyncio.Event()

    async def publish_event(self, subject: str, body: dict[str, Any]) -> None:
        self.events.append((subject, body))
        self._changed.set()
        self._changed = asyncio.Event()

    def of(self, subject: str) -> list[dict[str, Any]]:
        return [body for s, body in self.events if s == subject]

    def texts(self) -> list[str]:
        return [body["text"] for body in self.of(EVENTS_MESSAGE)]

    async def wait_until(self, check: Callable[[], bool], timeout: float, what: str) -> None:
        try:
            async with asyncio.timeout(timeout):
                while not check():
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"not within {timeout:g} s: {what}; got {self.events}") from None


@pytest.fixture
async def world() -> AsyncIterator[World]:
    async with World() as w:
        yield w


def settings_for(double: CytubeDouble, **overrides: Any) -> CytubeSettings:
    base = CytubeSettings(server=double.url, channel=CHAN, username=BOT, step_timeout=5.0)
    return replace(base, **overrides)


def fast_backoff() -> Backoff:
    return Backoff(base=0.05, cap=0.5, jitter=0.5, throttle_refill=0.0)


@contextlib.asynccontextmanager
async def running(
    settings: CytubeSettings, *, backoff: Backoff | None = None, joined: bool = True
) -> AsyncIterator[tuple[CytubeClient, Sink]]:
    """A client running for the block, stopped (and its task awaited) at the end."""
    sink = Sink()
    client = CytubeClient(settings, sink, backoff=backoff or fast_backoff(), rng=random.Random(7))
    task = asyncio.create_task(client.run())
    try:
        if joined:
            async with asyncio.timeout(10):
                await client.joined.wait()
        yield client, sink
    finally:
        await client.stop()
        async with asyncio.timeout(10):
            await task


async def wait_state(client: CytubeClient, check: Callable[[], bool], what: str) -> None:
    """The client's status changes without an event of its own: poll it, with a deadline."""

    async def holds() -> bool:
        return check()

    await eventually(holds, 10, what)


# ---------------------------------------------------------------------- joining


async def test_account_login_and_chat_in_by_channel_and_pm(world: World) -> None:
    double = await world.double(accounts={BOT: ("botpw", 3), "Mod": ("pw", 2)})
    async with running(settings_for(double, password="botpw")) as (client, sink):
        assert double.users(CHAN) == {BOT: 3}
        assert client.status().state is ConnectorState.JOINED
        alice = await world.enter(double, CHAN, "alice")
        mod = await world.enter(double, CHAN, "Mod", "pw")
        await alice.say("!roll <2d6> & https://example.org")
        await mod.pm(BOT, "!plugin list")
        await sink.wait_until(lambda: len(sink.of(EVENTS_MESSAGE)) == 2, 5, "2 messages")
        said, pm = sink.of(EVENTS_MESSAGE)
        assert said["text"] == "!roll <2d6> & https://example.org"
        assert said["html"].startswith("!roll &lt;2d6&gt; &amp; <a href=")
        assert said["user"] == {"username": "alice", "rank": 0, "guest": True}
        assert (said["platform"], said["channel"], "private" in said) == ("cytube", CHAN, False)
        assert pm["private"] is True
        assert pm["user"] == {"username": "Mod", "rank": 2, "guest": False}


async def test_socket_server_discovery_prefers_secure_and_falls_back(world: World) -> None:
    secure = await world.double(secure=True)  # its non-secure entry is a dead end
    async with running(settings_for(secure)):
        assert BOT in secure.users(CHAN)
    plain = await world.double(secure=False)
    async with running(settings_for(plain)):
        assert BOT in plain.users(CHAN)


async def test_guest_login(world: World) -> None:
    double = await world.double()
    async with running(settings_for(double)):
        assert double.users(CHAN) == {BOT: 0}


async def test_channel_password(world: World) -> None:
    double = await world.double(channel_passwords={CHAN: "sesame"})
    async with running(settings_for(double, channel_password="sesame")):
        assert BOT in double.users(CHAN)


@pytest.mark.parametrize(
    ("options", "overrides", "kind", "words"),
    [
        (
            {"accounts": {BOT: ("botpw", 1)}},
            {"password": "wrong"},
            RefusalKind.BAD_PASSWORD,
            "password for account 'RoseyBot' is wrong",
        ),
        ({"accounts": {BOT: ("botpw", 1)}}, {}, RefusalKind.NAME_REGISTERED, "registered account"),
        (
            {"channel_passwords": {CHAN: "sesame"}},
            {},
            RefusalKind.CHANNEL_PASSWORD_NEEDED,
            "set `channel_password`",
        ),
        (
            {"channel_passwords": {CHAN: "sesame"}},
            {"channel_password": "nope"},
            RefusalKind.CHANNEL_PASSWORD_WRONG,
            "refused its password",
        ),
        ({"banned": {BOT}}, {}, RefusalKind.BANNED, "banned"),
        ({"reserved": {BOT}}, {}, RefusalKind.NAME_INVALID, "does not accept the name"),
    ],
)
async def test_refusals_that_retrying_cannot_fix_stop_with_words(
    world: World,
    options: dict[str, Any],
    overrides: dict[str, Any],
    kind: RefusalKind,
    words: str,
) -> None:
    double = await world.double(**options)
    async with running(settings_for(double, **overrides), joined=False) as (client, _):
        await wait_state(client, lambda: client.status().state is ConnectorState.STOPPED, "stop")
        status = client.status()
        assert status.refusal is kind
        assert status.last_error is not None
        assert words in status.last_error
        assert "botpw" not in status.last_error
        assert "sesame" not in status.last_error
        connects = double.connects
    assert double.connects == connects  # and it does not try again


async def test_name_in_use_is_retried_until_free(world: World) -> None:
    double = await world.double()
    squatter = await world.enter(double, CHAN, BOT)
    async with running(settings_for(double), joined=False) as (client, _):
        await wait_state(
            client, lambda: client.status().refusal is RefusalKind.NAME_TAKEN, "name taken"
        )
        assert "in use" in (client.status().last_error or "")
        await squatter.close()
        async with asyncio.timeout(10):
            await client.joined.wait()
        assert client.status().last_error is None


async def test_guest_cooldown_waits_what_the_server_says(world: World) -> None:
    double = await world.double(guest_login_delay=1.5)
    await world.enter(double, CHAN, "alice")  # the address's guest login for now
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with running(settings_for(double), joined=False) as (client, _):
        await wait_state(
            client, lambda: client.status().refusal is RefusalKind.GUEST_COOLDOWN, "cooldown"
        )
        assert "every 1.5 s" in (client.status().last_error or "")
        async with asyncio.timeout(10):
            await client.joined.wait()
        assert loop.time() - started >= 1.5
        assert double.refused_connects == 0


# ---------------------------------------------------------------------- chat out


async def test_replies_in_the_channel_and_by_pm(world: World) -> None:
    double = await world.double()
    alice = await world.enter(double, CHAN, "alice")
    async with running(settings_for(double)) as (client, _):
        assert client.enqueue({"channel": CHAN, "text": "hello <alice>", "in_reply_to": "x"})
        assert client.enqueue({"channel": CHAN, "text": "psst", "in_reply_to": None, "to": "alice"})
        await alice.wait_for("pm")
        await alice.wait_until(lambda: "hello &lt;alice&gt;" in alice.chat(BOT), 5, "reply")
        assert alice.of("pm")[0]["msg"] == "psst"
        assert double.lines(CHAN, BOT) == ["hello &lt;alice&gt;"]
        # A PM to someone who left is counted, not retried forever.
        assert client.enqueue({"channel": CHAN, "text": "hi", "in_reply_to": None, "to": "ghost"})
        await wait_state(client, lambda: client.counters.pm_failed == 1, "pm failed")
        # A line for another channel is not this connector's.
        assert not client.enqueue({"channel": "other", "text": "x", "in_reply_to": None})


async def test_a_reply_is_never_taken_as_a_server_command(world: World) -> None:
    double = await world.double()
    alice = await world.enter(double, CHAN, "alice")
    async with running(settings_for(double)) as (client, _):
        client.enqueue({"channel": CHAN, "text": "/clear", "in_reply_to": None})
        await alice.wait_until(lambda: alice.chat(BOT) == [COMMAND_GUARD + "/clear"], 5, "shown")
        assert double.commands == []


async def test_a_burst_of_40_replies_is_delivered_whole(world: World) -> None:
    """The server drops what comes too fast: the pacer keeps all 40 within its limits."""
    double = await world.double()
    alice = await world.enter(double, CHAN, "alice")
    async with running(settings_for(double)) as (client, _):
        for i in range(40):
            assert client.enqueue({"channel": CHAN, "text": f"reply {i}", "in_reply_to": None})
        await alice.wait_until(lambda: len(alice.chat(BOT)) == 40, 15, "40 replies")
        assert alice.chat(BOT) == [f"reply {i}" for i in range(40)]
        assert double.cooldowns == []
        assert client.counters.dropped == 0
        await wait_state(client, lambda: client.counters.delivered == 40, "40 confirmed")


async def test_a_2000_character_reply_arrives_whole_in_parts(world: World) -> None:
    double = await world.double()
    alice = await world.enter(double, CHAN, "alice")
    text = " ".join(f"w{i}😀" for i in range(500))[:2000]
    async with running(settings_for(double)) as (client, _):
        client.enqueue({"channel": CHAN, "text": text, "in_reply_to": None})
        await alice.wait_until(
            lambda: " ".join(alice.chat(BOT)) == text, 10, "the whole reply, in order"
        )
        assert len(alice.chat(BOT)) > 2


async def test_cooldown_is_answered_by_waiting_and_resending(world: World) -> None:
    """The server's limit changes without telling the bot: lines dropped with ``cooldown``
    are sent again after the wait, none lost."""
    double = await world.double()
    alice = await world.enter(double, CHAN, "alice")
    async with running(settings_for(double)) as (client, _):
        # Silently: the bot is not told (no channelOpts), so its pacer runs too fast.
        double.channel(CHAN).opts.update(
            chat_antiflood=True, chat_antiflood_params={"burst": 3, "sustained": 5}
        )
        for i in range(8):
            client.enqueue({"channel": CHAN, "text": f"line {i}", "in_reply_to": None})
        await alice.wait_until(lambda: len(alice.chat(BOT)) == 8, 15, "8 lines")
        assert sorted(alice.chat(BOT)) == sorted(f"line {i}" for i in range(8))
        assert double.cooldowns
        assert client.counters.cooldowns == len(double.cooldowns)
        assert client.counters.resent >= len(double.cooldowns)
        assert client.counters.given_up == 0


async def test_the_pacer_learns_the_channel_antiflood_and_the_bots_rank(world: World) -> None:
    double = await world.double()
    await double.set_opts(
        CHAN, chat_antiflood=True, chat_antiflood_params={"burst": 2, "sustained": 4}
    )
    alice = await world.enter(double, CHAN, "alice")
    async with running(settings_for(double)) as (client, _):
        assert (client.pacer.params.burst, client.pacer.params.sustained) == (2, 4)
        for i in range(6):
            client.enqueue({"channel": CHAN, "text": f"slow {i}", "in_reply_to": None})
        await alice.wait_until(lambda: len(alice.chat(BOT)) == 6, 10, "6 lines")
        assert double.cooldowns == []
        await double.set_rank(CHAN, BOT, 2)  # a moderator: the default limits again
        await wait_state(client, lambda: client.pacer.params.burst == 20, "rank learned")


async def test_a_muted_bot_gives_lines_up_and_counts_them(world: World) -> None:
    double = await world.double()
    async with running(settings_for(double, max_resends=1)) as (client, _):
        double.mute(CHAN, BOT)
        client.enqueue({"channel": CHAN, "text": "anyone?", "in_reply_to": None})
        await wait_state(client, lambda: client.counters.given_up == 1, "given up")
        assert len(double.nofloods) == 2  # sent, refused, sent again, refused
        assert double.lines(CHAN) == []


async def test_a_full_queue_drops_whole_replies_and_counts_them(world: World) -> None:
    double = await world.double()
    async with running(settings_for(double, queue_size=3), joined=False) as (client, _):
        assert client.enqueue({"channel": CHAN, "text": "a\nb", "in_reply_to": None})
        assert not client.enqueue({"channel": CHAN, "text": "c\nd", "in_reply_to": None})
        assert client.counters.dropped == 2


# ---------------------------------------------------------------------- what is not a command


async def test_history_own_echoes_and_server_lines_are_not_commands(world: World) -> None:
    double = await world.double()
    alice = await world.enter(double, CHAN, "alice")
    for i in range(3):
        await alice.say(f"!old {i}")
    await double.wait_until(lambda: len(double.lines(CHAN)) == 3, 5, "history")
    async with running(settings_for(double)) as (client, sink):
        await double.server_say(CHAN, "!roll from the server")
        client.enqueue({"channel": CHAN, "text": "!roll said by the bot", "in_reply_to": None})
        await double.wait_until(lambda: len(double.lines(CHAN, BOT)) == 1, 5, "bot line")
        await alice.say("!new")
        await sink.wait_until(lambda: sink.texts() == ["!new"], 5, "only the live line")
    # A reconnect replays it all again: nothing is delivered twice.
    async with running(settings_for(double)) as (_, sink):
        await alice.say("!newer")
        await sink.wait_until(lambda: sink.texts() == ["!newer"], 5, "only the newer line")


async def test_history_replayed_after_login_is_not_a_command(world: World) -> None:
    double = await world.double(replay_after_login=True)
    alice = await world.enter(double, CHAN, "alice")
    await alice.say("!old")
    await double.wait_until(lambda: double.lines(CHAN) == ["!old"], 5, "history")
    async with running(settings_for(double)) as (_, sink):
        await alice.say("!new")
        await sink.wait_until(lambda: sink.texts() == ["!new"], 5, "only the live line")


# ---------------------------------------------------------------------- users and media


async def test_user_and_media_events(world: World) -> None:
    double = await world.double(accounts={"carol": ("pw", 1)})
    await double.change_media(CHAN, "abc", "Already playing", 60)
    async with running(settings_for(double)) as (_, sink):
        carol = await world.enter(double, CHAN, "carol", "pw")
        await double.set_rank(CHAN, "carol", 3)
        await double.change_media(CHAN, "xyz", "Next video", 213)
        await carol.close()
        await sink.wait_until(lambda: len(sink.of(EVENTS_USER_LEAVE)) == 1, 5, "leave")
        joins = sink.of(EVENTS_USER_JOIN)
        assert [j["user"] for j in joins] == [{"username": "carol", "rank": 1, "guest": False}]
        assert sink.of(EVENTS_USER_LEAVE)[0]["user"] == {
            "username": "carol",
            "rank": 3,
            "guest": False,  # the rank kept current
        }
        media = [m["media"] for m in sink.of(EVENTS_MEDIA_CHANGE)]
        assert media == [
            {"type": "yt", "id": "abc", "title": "Already playing", "duration": 60},
            {"type": "yt", "id": "xyz", "title": "Next video", "duration": 213},
        ]
        assert all(e["platform"] == "cytube" and e["channel"] == CHAN for _, e in sink.events)


# ---------------------------------------------------------------------- staying connected


async def test_server_restart_reconnects_and_nothing_is_lost(world: World) -> None:
    double = await world.double()
    async with running(settings_for(double)) as (client, sink):
        await double.stop()
        await wait_state(client, lambda: not client.joined.is_set(), "noticed")
        client.enqueue({"channel": CHAN, "text": "said while down", "in_reply_to": None})
        await double.start()
        async with asyncio.timeout(10):
            await client.joined.wait()
        alice = await world.enter(double, CHAN, "alice")
        await alice.wait_until(lambda: "said while down" in alice.chat(BOT), 5, "queued line")
        await alice.say("!roll")
        await sink.wait_until(lambda: sink.texts() == ["!roll"], 5, "chat works again")
        assert client.counters.reconnects == 1
        assert client.status().refusal is None


async def test_kick_backs_off_then_stops_after_max_kick_retries(world: World) -> None:
    double = await world.double()
    backoff = Backoff(base=0.3, cap=5, jitter=0.5, throttle_refill=0.0)
    settings = settings_for(double, max_kick_retries=1)
    async with running(settings, backoff=backoff) as (client, _):
        loop = asyncio.get_running_loop()
        await double.kick(BOT, "Go away")
        kicked = loop.time()
        await wait_state(client, lambda: not client.joined.is_set(), "kicked")
        assert client.status().refusal is RefusalKind.KICKED
        assert "Go away" in (client.status().last_error or "")
        async with asyncio.timeout(10):
            await client.joined.wait()
        assert loop.time() - kicked >= 0.15  # base 0.3 less at most half of jitter
        await double.kick(BOT, "Go away again")
        await wait_state(client, lambda: client.status().state is ConnectorState.STOPPED, "stop")
        assert "not rejoining after 2 kicks" in (client.status().last_error or "")
        assert BOT not in double.users(CHAN)


async def test_a_silent_server_is_noticed_by_engineio_liveness(world: World) -> None:
    """A server that stops answering (no close, no pings) is left after pingInterval +
    pingTimeout, not after some time without chat: a quiet channel stays connected."""
    double = await world.double(ping_interval=1, ping_timeout=1)
    async with running(settings_for(double)) as (client, _):
        await asyncio.sleep(2.5)  # quiet: longer than a ping round, the connection must hold
        assert client.joined.is_set()
        assert client.counters.reconnects == 0
        double.freeze()
        await wait_state(client, lambda: not client.joined.is_set(), "silence noticed")
        async with asyncio.timeout(10):
            await client.joined.wait()


def kicked(client: CytubeClient, times: int) -> Callable[[], bool]:
    return lambda: client.counters.kicks == times


async def test_reconnects_stay_within_the_connection_throttle(world: World) -> None:
    """Kicked again and again, the connector never finds the server's connection bucket empty
    (here 2 connects, one more per second, and the connector is told those numbers)."""
    double = await world.double(connect_burst=2, connect_refill=1.0)
    backoff = Backoff(base=0.01, cap=0.05, throttle_burst=2, throttle_refill=1.0)
    async with running(settings_for(double, max_kick_retries=10), backoff=backoff) as (client, _):
        loop = asyncio.get_running_loop()
        started = loop.time()
        for i in range(1, 5):
            await double.kick(BOT, f"kick {i}")
            await wait_state(client, kicked(client, i), f"kick {i}")
            await wait_state(client, lambda: BOT in double.users(CHAN), f"back after kick {i}")
        assert double.refused_connects == 0
        assert double.connects == 5
        # Without the throttle, 5 connects would take no time; with it, at least 3 refills.
        assert loop.time() - started >= 3 * 1.0
