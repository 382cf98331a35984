"""The CyTube connector running in the real bot (issue 12): a supervised, sandboxed process with
its own broker account, against the CyTube double, with people in the channel.

Each test starts the double, then ``rosey run`` with a ``connectors:`` entry pointing at it and
the example plugins; the "human" is a python-socketio client in the double's channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from botproc import EXAMPLE_PLUGINS, REPO, BotProcess, run_bot
from cytube.double import CytubeDouble
from cytube.human import Human
from cytube.kit import World
from helpers import eventually

CHAT_FIXTURES = REPO / "tests" / "fixtures" / "chat"
PLUGINS = (EXAMPLE_PLUGINS, CHAT_FIXTURES)
CHAN = "testchan"
BOT = "RoseyBot"
BOT_PASSWORD = "bot-secret-pw"
PW_VAR = "ROSEYTEST_CYTUBE_PW"  # run_bot drops ROSEY_* variables, so not that prefix


def connector_config(double: CytubeDouble, *, name: str = "cytube", extra: str = "") -> str:
    """The four lines an operator writes (plus the password as a secret)."""
    return (
        "connectors:\n"
        f"  {name}:\n"
        "    type: cytube\n"
        f"    server: {double.url}\n"
        f"    channel: {CHAN}\n"
        f"    username: {BOT}\n"
        f"    password: env:{PW_VAR}\n"
        f"{extra}"
    )


def bot_lines(human: Human) -> list[str]:
    return human.chat(BOT)


def bot_pms(human: Human) -> list[str]:
    return [
        str(d["msg"]) for d in human.of("pm") if str(d.get("username", "")).lower() == BOT.lower()
    ]


@contextlib.asynccontextmanager
async def bot_in_channel(
    tmp_path: Path,
    double: CytubeDouble,
    *,
    config: str | None = None,
    plugins_dirs: tuple[Path, ...] = PLUGINS,
    unprivileged: bool = False,
) -> AsyncIterator[BotProcess]:
    os.environ[PW_VAR] = BOT_PASSWORD
    try:
        async with run_bot(
            tmp_path,
            plugins_dirs=plugins_dirs,
            config=config or connector_config(double),
            unprivileged=unprivileged,
        ) as bot:
            await double.wait_until(
                lambda: BOT.lower() in {n.lower() for n in double.users(CHAN)},
                20,
                "the bot in the channel",
            )
            yield bot
    finally:
        os.environ.pop(PW_VAR, None)


def double_options() -> dict[str, Any]:
    return {"accounts": {BOT: (BOT_PASSWORD, 2), "Owner": ("ownerpw", 3)}}


@pytest.mark.asyncio
async def test_roll_in_chat_and_by_pm(tmp_path: Path) -> None:
    async with World() as world:
        double = await world.double(**double_options())
        async with bot_in_channel(tmp_path, double) as bot:
            alice = await world.enter(double, CHAN, "alice")
            await alice.say("!roll 2d6")
            await alice.wait_until(
                lambda: any("2d6" in line for line in bot_lines(alice)), 15, "the roll in chat"
            )
            await alice.pm(BOT, "!roll 2d6")
            await alice.wait_until(
                lambda: any("2d6" in line for line in bot_pms(alice)), 15, "the roll by PM"
            )
            # Answered privately: not a second line in the channel.
            assert sum("2d6" in line for line in bot_lines(alice)) == 1
            status = await bot.manage("status", {"plugin": "cytube"})
            assert status["ok"], status
            # The password never shows: not in status, not in the bot's log.
            assert BOT_PASSWORD not in json.dumps(status)
            assert not any(BOT_PASSWORD in line for line in bot.log)


@pytest.mark.asyncio
async def test_burst_and_long_reply(tmp_path: Path) -> None:
    async with World() as world:
        double = await world.double(**double_options())
        async with bot_in_channel(tmp_path, double):
            # 40 commands at once: from 4 people (the server's flood limit would drop a
            # single person's lines beyond 20 at once).
            people = [await world.enter(double, CHAN, f"user{n}") for n in range(4)]
            await asyncio.gather(
                *(
                    person.say(f"!echo burst{n * 10 + i}")
                    for n, person in enumerate(people)
                    for i in range(10)
                )
            )
            watcher = people[0]
            await watcher.wait_until(
                lambda: {f"burst{i}" for i in range(40)} <= set(bot_lines(watcher)),
                60,
                "40 answers",
            )
            assert len([d for d in double.cooldowns if d[0].lower() == BOT.lower()]) == 0
            long = " ".join(f"w{i:03d}" for i in range(400))  # 2 000 characters
            assert len(long) == 1999
            await watcher.say("!long 400")

            def whole() -> bool:
                # The router numbers its messages ("[1/4] ") and the connector cuts each at
                # the server's length: take the prefixes and the cuts' spaces away.
                parts = [
                    re.sub(r"^\[\d+/\d+\] ", "", line)
                    for line in bot_lines(watcher)
                    if not line.startswith("burst")
                ]
                return "".join("".join(parts).split()) == "".join(long.split())

            await watcher.wait_until(whole, 30, "the long reply whole, in parts")


@pytest.mark.asyncio
async def test_admin_by_rank_not_by_guest_name(tmp_path: Path) -> None:
    """``cytube:alice`` is alice's account, never a guest who took the name; rank>=3 is admin."""
    async with World() as world:
        double = await world.double(**double_options())
        config = connector_config(double) + 'admins: ["cytube:alice", "cytube:rank>=3"]\n'
        async with bot_in_channel(tmp_path, double, config=config) as bot:
            impostor = await world.enter(double, CHAN, "alice")  # a guest: no account
            await impostor.say("!plugin stop dice")
            await impostor.wait_until(
                lambda: any(line.startswith("!plugin") for line in bot_lines(impostor)),
                15,
                "the refusal",
            )
            assert any("refused" in line.lower() or "not" in line for line in bot_lines(impostor))
            status = await bot.manage("status", {"plugin": "dice"})
            assert status["result"]["state"] == "running", status
            owner = await world.enter(double, CHAN, "Owner", "ownerpw")
            await owner.say("!plugin stop dice")

            async def stopped() -> bool:
                status = await bot.manage("status", {"plugin": "dice"})
                return bool(status["result"]["state"] == "stopped")

            await eventually(stopped, 15, "dice stopped by the owner")


@pytest.mark.asyncio
async def test_connector_killed_comes_back(tmp_path: Path) -> None:
    async with World() as world:
        double = await world.double(**double_options())
        async with bot_in_channel(tmp_path, double) as bot:
            status = await bot.manage("status", {"plugin": "cytube"})
            pid = status["result"]["stats"]["pid"]
            assert pid
            dice_before = (await bot.manage("status", {"plugin": "dice"}))["result"]
            os.kill(pid, signal.SIGKILL)

            async def back() -> bool:
                status = await bot.manage("status", {"plugin": "cytube"})
                result = status["result"]
                return bool(
                    result["state"] == "running" and result["stats"]["pid"] not in (None, pid)
                )

            await eventually(back, 30, "the connector running again")
            alice = await world.enter(double, CHAN, "alice")
            await alice.say("!roll 1d6")
            await alice.wait_until(
                lambda: any("1d6" in line for line in bot_lines(alice)), 20, "chat after restart"
            )
            # The plugins never noticed: same process, no restart.
            dice_after = (await bot.manage("status", {"plugin": "dice"}))["result"]
            assert dice_after["stats"]["pid"] == dice_before["stats"]["pid"]
            assert dice_after["restart_count"] == dice_before["restart_count"]


@pytest.mark.asyncio
async def test_server_restart_reconnects(tmp_path: Path) -> None:
    async with World() as world:
        double = await world.double(**double_options())
        async with bot_in_channel(tmp_path, double):
            await double.stop()
            await double.start()
            await double.wait_until(
                lambda: BOT.lower() in {n.lower() for n in double.users(CHAN)},
                40,
                "the bot back in the channel",
            )
            alice = await world.enter(double, CHAN, "alice")
            await alice.say("!roll 1d4")
            await alice.wait_until(
                lambda: any("1d4" in line for line in bot_lines(alice)), 20, "chat after reconnect"
            )


@pytest.mark.asyncio
async def test_two_channels_at_once(tmp_path: Path) -> None:
    async with World() as world:
        first = await world.double(**double_options())
        second = await world.double(**double_options())
        config = connector_config(first, name="one") + connector_config(second, name="two")[
            len("connectors:\n") :
        ].replace(CHAN, "otherchan")
        os.environ[PW_VAR] = BOT_PASSWORD
        try:
            async with run_bot(tmp_path, plugins_dirs=PLUGINS, config=config):
                await first.wait_until(lambda: BOT in first.users(CHAN), 20, "bot in one")
                await second.wait_until(lambda: BOT in second.users("otherchan"), 20, "in two")
                alice = await world.enter(first, CHAN, "alice")
                bob = await world.enter(second, "otherchan", "bob")
                await alice.say("!echo for-one")
                await bob.say("!echo for-two")
                await alice.wait_until(lambda: "for-one" in bot_lines(alice), 15, "one answered")
                await bob.wait_until(lambda: "for-two" in bot_lines(bob), 15, "two answered")
                assert "for-two" not in bot_lines(alice)
                assert "for-one" not in bot_lines(bob)
        finally:
            os.environ.pop(PW_VAR, None)


@pytest.mark.asyncio
async def test_forged_platform_refused_and_reported(tmp_path: Path, bot_privilege: str) -> None:
    """A connector that claims another platform's channel is refused and reported."""
    async with World() as world:
        double = await world.double(**double_options())
        config = (
            "connectors:\n"
            "  forger:\n"
            f"    type: {CHAT_FIXTURES / 'forging_connector'}\n"
            "    channel: mine\n"
        )
        async with run_bot(
            tmp_path,
            plugins_dirs=PLUGINS,
            config=config,
            unprivileged=(bot_privilege == "unprivileged"),
        ) as bot:
            assert bot.nc is not None
            seen: list[dict[str, Any]] = []
            violations: list[dict[str, Any]] = []

            async def on_event(msg: Any) -> None:
                seen.append(json.loads(msg.data))

            async def on_violation(msg: Any) -> None:
                violations.append(json.loads(msg.data))

            await bot.nc.subscribe("rosey.events.message", cb=on_event)
            await bot.nc.subscribe("rosey.security.violation", cb=on_violation)
            await bot.nc.flush()

            async def reported() -> bool:
                return any(v["plugin"] == "forger" and v["kind"] == "forged" for v in violations)

            async def honest_relayed() -> bool:
                return any(m["text"] == "honest" for m in seen)

            async def listened() -> bool:
                return any(
                    v["plugin"] == "forger"
                    and v["kind"] == "subscribe"
                    and v["subject"] == "rosey.platform.cytube.send"
                    for v in violations
                )

            await eventually(reported, 20, "the forgery reported")
            await eventually(honest_relayed, 20, "the honest line relayed")
            # Listening in on another platform's sends: refused by the broker, and reported
            # (perhaps before we subscribed, so read the bot's log too).
            if not await listened():
                await bot.wait_for_log(
                    "refused to subscribe 'rosey.platform.cytube.send'", timeout=10
                )
            # Nothing ever came out claiming the other platform or channel.
            assert all(m["platform"] == "fixture" and m["channel"] == "mine" for m in seen), seen
            assert not any(m["text"] == "forged" for m in seen)
        del double


async def test_refusal_shown_in_status(tmp_path: Path) -> None:
    """A wrong password: the connector says so in words in ``rosey plugin status``."""
    async with World() as world:
        double = await world.double(**double_options())
        os.environ[PW_VAR] = "wrong-password"
        try:
            async with run_bot(
                tmp_path, plugins_dirs=PLUGINS, config=connector_config(double)
            ) as bot:

                async def said() -> bool:
                    status = await bot.manage("status", {"plugin": "cytube"})
                    return "password" in str(status["result"]["last_error"])

                await eventually(said, 20, "the refusal in status")
                status = (await bot.manage("status", {"plugin": "cytube"}))["result"]
                assert status["state"] == "running"
                assert status["kind"] == "connector"
                assert "is wrong" in status["last_error"], status["last_error"]
                assert "wrong-password" not in json.dumps(status)
                listed = await bot.manage("list")
                kinds = {p["name"]: p.get("kind") for p in listed["result"]["plugins"]}
                assert kinds["cytube"] == "connector"
                assert kinds["dice"] == "plugin"
        finally:
            os.environ.pop(PW_VAR, None)
