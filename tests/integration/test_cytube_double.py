"""The CyTube double against the facts observed on a real server (../shared/cytube.md).

These keep the double honest: the connector's tests are only worth what the double imitates.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
import socketio

from cytube.double import BANNED, INVALID_CHANNEL
from cytube.human import LoginRefused
from cytube.kit import World

CHAN = "testchan"


@pytest.fixture
async def world() -> AsyncIterator[World]:
    async with World() as w:
        yield w


async def test_socketconfig_lists_a_secure_and_a_plain_server(world: World) -> None:
    double = await world.double()
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{double.url}/socketconfig/{CHAN}.json") as resp:
            body = await resp.json()
        assert sorted(s["secure"] for s in body["servers"]) == [False, True]
        assert [s["url"] for s in body["servers"] if s["secure"]] == [double.url]
        double.secure = False
        async with http.get(f"{double.url}/socketconfig/{CHAN}.json") as resp:
            assert (await resp.json())["servers"] == [{"url": double.url, "secure": False}]


async def test_ranks_on_connect_and_login(world: World) -> None:
    double = await world.double(accounts={"Mod": ("pw", 2)})
    guest = await world.enter(double, CHAN, "alice")
    assert guest.of("rank") == [-1, 0]
    assert guest.of("login") == [{"success": True, "name": "alice", "guest": True}]
    mod = await world.enter(double, CHAN, "Mod", "pw")
    assert mod.of("rank") == [-1, 2]
    assert mod.of("login") == [{"success": True, "name": "Mod"}]
    assert double.users(CHAN) == {"alice": 0, "Mod": 2}


async def test_join_sends_the_channel_state(world: World) -> None:
    double = await world.double()
    alice = await world.enter(double, CHAN, "alice")
    names = [event for event, _, _ in alice.events]
    for event in ("setPermissions", "channelOpts", "playlist", "userlist", "usercount"):
        assert event in names
    assert names.index("setPermissions") < names.index("userlist")


@pytest.mark.parametrize(
    ("name", "password", "error"),
    [
        ("Mod", None, "That username is registered."),
        ("Mod", "wrong", "Invalid username/password combination"),
        ("alice", None, "That name is already in use on this channel."),
        ("ALICE", None, "That name is already in use on this channel."),
        ("admin", None, "That username is reserved."),
        ("no spaces", None, "Invalid username."),
        ("x" * 21, None, "Invalid username."),
    ],
)
async def test_login_refusals(world: World, name: str, password: str | None, error: str) -> None:
    double = await world.double(accounts={"Mod": ("pw", 2)}, reserved={"admin"})
    await world.enter(double, CHAN, "alice")
    other = world.human(double)
    await other.connect()
    await other.join(CHAN)
    with pytest.raises(LoginRefused) as refused:
        await other.login(name, password)
    assert refused.value.error.startswith(error)
    assert other.of("rank") == [-1]


async def test_guest_login_delay_per_address(world: World) -> None:
    double = await world.double(guest_login_delay=60)
    await world.enter(double, CHAN, "alice")
    bob = world.human(double)
    await bob.connect()
    await bob.join(CHAN)
    with pytest.raises(LoginRefused) as refused:
        await bob.login("bob")
    assert refused.value.error == (
        "Guest logins are restricted to one per IP address per 60 seconds."
    )
    carol = world.human(await world.double(guest_login_delay=60))  # another server: no delay
    await carol.connect()
    await carol.login("carol")


async def test_invalid_channel_name_is_an_error_and_a_kick(world: World) -> None:
    double = await world.double()
    alice = world.human(double)
    await alice.connect()
    await alice.sio.emit("joinChannel", {"name": "no spaces!"})
    await alice.wait_for("kick")
    assert alice.of("errorMsg") == [{"msg": INVALID_CHANNEL}]
    await alice.wait_until(lambda: not alice.sio.connected, 5, "disconnected after the kick")


async def test_channel_password(world: World) -> None:
    double = await world.double(channel_passwords={CHAN: "sesame"})
    alice = world.human(double)
    await alice.connect()
    await alice.sio.emit("joinChannel", {"name": CHAN})
    assert await alice.wait_for("needPassword") is False
    await alice.sio.emit("joinChannel", {"name": CHAN, "pw": "wrong"})
    await alice.wait_until(lambda: alice.of("needPassword") == [False, True], 5, "wrong pw")
    assert not alice.of("userlist")
    await alice.join(CHAN, "sesame")
    await alice.login("alice")
    assert double.users(CHAN) == {"alice": 0}


async def test_banned_user_is_kicked(world: World) -> None:
    double = await world.double(banned={"troll"})
    troll = world.human(double)
    await troll.connect()
    await troll.join(CHAN)
    await troll.sio.emit("login", {"name": "troll"})
    assert await troll.wait_for("kick") == {"reason": BANNED}


async def test_user_list_and_its_broadcasts(world: World) -> None:
    double = await world.double(accounts={"carol": ("pw", 1)})
    alice = await world.enter(double, CHAN, "alice")
    bob = await world.enter(double, CHAN, "bob")
    assert [u["name"] for u in bob.of("userlist")[0]] == ["alice"]  # logged-in users only
    assert (await alice.wait_for("addUser", lambda u: u["name"] == "bob"))["rank"] == 0
    carol = await world.enter(double, CHAN, "carol", "pw")
    assert (await alice.wait_for("addUser", lambda u: u["name"] == "carol"))["rank"] == 1
    await double.set_rank(CHAN, "carol", 3)  # registered, then raised
    assert await alice.wait_for("setUserRank") == {"name": "carol", "rank": 3}
    assert carol.of("rank")[-1] == 3
    await bob.close()
    assert await alice.wait_for("userLeave") == {"name": "bob"}
    assert double.users(CHAN) == {"alice": 0, "carol": 3}


async def test_history_of_15_lines_is_replayed_on_join(world: World) -> None:
    double = await world.double()
    alice = await world.enter(double, CHAN, "alice")
    for i in range(20):
        await alice.say(f"line {i}")
    await double.wait_until(lambda: len(double.lines(CHAN)) == 20, 5, "20 lines")
    bob = await world.enter(double, CHAN, "bob")
    assert bob.chat() == [f"line {i}" for i in range(5, 20)]
    # Ordinary chatMsg events, with their original server time, before the login answer.
    names = [event for event, _, _ in bob.events]
    assert names.index("chatMsg") < names.index("login")
    stamps = [line["time"] for line in bob.of("chatMsg")]
    assert stamps == sorted(stamps)
    assert stamps[-1] <= double.chat[-1].time


async def test_history_may_come_after_login(world: World) -> None:
    """A registered channel being loaded (e.g. after a restart) replays after the login."""
    double = await world.double(replay_after_login=True)
    alice = await world.enter(double, CHAN, "alice")
    await alice.say("before")
    await double.wait_until(lambda: double.lines(CHAN) == ["before"], 5, "a line")
    bob = await world.enter(double, CHAN, "bob")
    await bob.wait_until(lambda: bob.chat() == ["before"], 5, "replayed")
    names = [event for event, _, _ in bob.events]
    assert names.index("login") < names.index("chatMsg")


async def test_msg_is_html_escaped_with_links_wrapped_and_controls_as_spaces(world: World) -> None:
    double = await world.double()
    alice = await world.enter(double, CHAN, "alice")
    await alice.say("a < b & c")
    await alice.say("see https://example.org/x?a=1&b=2 now")
    await alice.say("a\nb\tc")
    await alice.wait_until(lambda: len(alice.chat()) == 3, 5, "3 lines echoed")
    assert alice.chat() == [
        "a &lt; b &amp; c",
        'see <a href="https://example.org/x?a=1&amp;b=2" target="_blank" '
        'rel="noopener noreferrer">https://example.org/x?a=1&amp;b=2</a> now',
        "a b c",
    ]


async def test_truncation_counts_utf16_code_units(world: World) -> None:
    double = await world.double()
    alice = await world.enter(double, CHAN, "alice")
    await alice.say("x" * 400)
    await alice.say("😀" * 200)  # 400 code units
    await alice.say("a" + "😀" * 200)  # the cut falls inside a surrogate pair
    await alice.wait_until(lambda: len(alice.chat()) == 3, 5, "3 lines echoed")
    plain, emoji, odd = alice.chat()
    assert plain == "x" * 320
    assert emoji == "😀" * 160
    assert odd[:-1] == "a" + "😀" * 159
    assert odd[-1] == "\ud83d"  # half a pair, as JavaScript does


async def test_40_back_to_back_lines_give_20_delivered_and_20_cooldowns(world: World) -> None:
    double = await world.double()
    alice = await world.enter(double, CHAN, "alice")
    for i in range(40):
        await alice.say(f"flood {i}")
    await alice.wait_until(
        lambda: len(alice.of("cooldown")) + len(alice.chat()) == 40, 5, "40 answers"
    )
    assert alice.chat() == [f"flood {i}" for i in range(20)]
    assert alice.of("cooldown") == [100.0] * 20


async def test_after_the_burst_lines_must_be_an_interval_apart_until_a_pause(world: World) -> None:
    """Not a token bucket: a 1 s pause does not buy a new burst, a 2 s+ pause does."""
    double = await world.double()
    alice = await world.enter(double, CHAN, "alice")
    for i in range(20):
        await alice.say(f"burst {i}")
    await alice.wait_until(lambda: len(alice.chat()) == 20, 5, "the burst")
    await asyncio.sleep(1.0)  # the rhythm under test, not a wait for an event
    for i in range(3):
        await alice.say(f"after 1 s {i}")
    await alice.wait_until(lambda: len(alice.of("cooldown")) == 2, 5, "2 dropped")
    await asyncio.sleep(0.15)
    await alice.say("spaced")
    await alice.wait_until(lambda: "spaced" in alice.chat(), 5, "a spaced line")
    await asyncio.sleep(2.2)
    for i in range(20):
        await alice.say(f"new burst {i}")
    await alice.wait_until(lambda: len(alice.chat()) == 42, 5, "a new burst of 20")
    assert len(alice.of("cooldown")) == 2


async def test_channel_antiflood_applies_below_moderator(world: World) -> None:
    double = await world.double(accounts={"Mod": ("pw", 2)})
    alice = await world.enter(double, CHAN, "alice")
    mod = await world.enter(double, CHAN, "Mod", "pw")
    await double.set_opts(
        CHAN, chat_antiflood=True, chat_antiflood_params={"burst": 4, "sustained": 1}
    )
    await alice.wait_for("channelOpts", lambda o: o["chat_antiflood"])
    for i in range(10):
        await alice.say(f"guest {i}")
        await mod.say(f"mod {i}")
    await double.wait_until(lambda: len(double.lines(CHAN, "Mod")) == 10, 5, "the moderator's")
    await alice.wait_until(lambda: len(alice.of("cooldown")) == 6, 5, "6 guest lines dropped")
    assert double.lines(CHAN, "alice") == [f"guest {i}" for i in range(4)]
    assert alice.of("cooldown") == [1000.0] * 6


async def test_commands_are_not_broadcast_as_typed(world: World) -> None:
    double = await world.double()
    alice = await world.enter(double, CHAN, "alice")
    await alice.say("/me waves")
    await alice.say("/clear")
    await alice.say("  /afk")
    await alice.say(">greentext")
    await alice.say("\u200b/shown")
    await alice.wait_until(lambda: len(alice.chat()) == 3, 5, "3 lines shown")
    lines = alice.of("chatMsg")
    assert [(line["msg"], line["meta"]) for line in lines] == [
        ("waves", {"addClass": "action", "action": True}),
        ("&gt;greentext", {"addClass": "greentext"}),
        ("\u200b/shown", {}),
    ]
    assert [raw for _, raw in double.commands] == ["/me waves", "/clear", "  /afk"]


async def test_muted_users_get_noflood(world: World) -> None:
    double = await world.double()
    alice = await world.enter(double, CHAN, "alice")
    double.mute(CHAN, "alice")
    await alice.say("hello?")
    await alice.wait_for("noflood")
    assert double.lines(CHAN) == []


async def test_pm_goes_to_the_recipient_and_back_to_the_sender(world: World) -> None:
    double = await world.double()
    alice = await world.enter(double, CHAN, "alice")
    bob = await world.enter(double, CHAN, "bob")
    await alice.pm("BOB", "psst <b>")
    got = await bob.wait_for("pm")
    assert {k: got[k] for k in ("username", "msg", "to")} == {
        "username": "alice",
        "msg": "psst &lt;b&gt;",
        "to": "bob",
    }
    assert await alice.wait_for("pm") == got
    await alice.pm("carol", "hello")
    assert await alice.wait_for("errorMsg") == {
        "msg": "PM failed: carol isn't connected to this channel."
    }
    assert double.lines(CHAN) == []  # never in the channel's chat


async def test_server_lines_kicks_and_media(world: World) -> None:
    double = await world.double()
    alice = await world.enter(double, CHAN, "alice")
    await double.server_say(CHAN, "alice was kicked")
    assert (await alice.wait_for("chatMsg"))["username"] == "[server]"
    await double.change_media(CHAN, "dQw4w9WgXcQ", "A song", 213)
    media = await alice.wait_for("changeMedia")
    assert (media["id"], media["title"], media["seconds"], media["type"]) == (
        "dQw4w9WgXcQ",
        "A song",
        213,
        "yt",
    )
    bob = await world.enter(double, CHAN, "bob")
    assert bob.of("changeMedia") == [media]  # a newcomer learns what plays
    await double.kick("alice", "Be nice")
    assert await alice.wait_for("kick") == {"reason": "Be nice"}
    await alice.wait_until(lambda: not alice.sio.connected, 5, "alice disconnected")


async def test_connection_throttle_per_address(world: World) -> None:
    double = await world.double(connect_burst=5, connect_refill=10)
    for _ in range(5):
        await world.human(double).connect()
    sixth = world.human(double)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await sixth.connect()
    assert double.refused_connects == 1


async def test_at_most_10_sockets_per_address(world: World) -> None:
    double = await world.double()
    for _ in range(10):
        await world.human(double).connect()
    with pytest.raises(socketio.exceptions.ConnectionError):
        await world.human(double).connect()
    await world.humans[0].close()
    await double.wait_until(lambda: double.open_sockets() == 9, 5, "one socket closed")
    await world.human(double).connect()


async def test_ping_settings_reach_the_client(world: World) -> None:
    double = await world.double(ping_interval=1, ping_timeout=2)
    alice = world.human(double)
    await alice.connect()
    assert (alice.sio.eio.ping_interval, alice.sio.eio.ping_timeout) == (1, 2)
    real = await world.double()
    bob = world.human(real)
    await bob.connect()
    assert (bob.sio.eio.ping_interval, bob.sio.eio.ping_timeout) == (25, 120)


async def test_stop_drops_everyone_and_start_listens_on_the_same_port(world: World) -> None:
    double = await world.double()
    alice = await world.enter(double, CHAN, "alice")
    await alice.say("kept")
    await double.wait_until(lambda: double.lines(CHAN) == ["kept"], 5, "a line")
    url = double.url
    await double.stop()
    await alice.wait_until(lambda: not alice.sio.connected, 5, "alice dropped")
    assert not alice.of("kick")  # no goodbye: a crash
    await double.start()
    assert double.url == url
    assert double.users(CHAN) == {}
    bob = await world.enter(double, CHAN, "bob")
    assert bob.chat() == ["kept"]  # history survives, as CyTube saves it with the channel
