"""A hostile plugin tries forbidden things; each is refused, reported, and nobody else suffers.

The refusals come from outside the plugin: the broker (per-plugin identity, allow-lists) and
the kernel (Landlock, dropped capabilities). The reports come from the broker's own log.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import nats
from nats.aio.msg import Msg

from botproc import EXAMPLE_PLUGINS, FIXTURE_PLUGINS, BotProcess, run_bot
from helpers import eventually

HOSTILE = FIXTURE_PLUGINS / "hostile"
DICE = EXAMPLE_PLUGINS / "dice"
PUBLISH_TARGETS = [
    "rosey.manager.stop",
    "rosey.manager.disable",
    "rosey.commands.dice.execute",
    "rosey.events.message",
    "rosey.security.violation",
    "rosey.manager.events.dice",
    "rosey.commands.dice.error",
    "rosey.plugins.dice.hacked",
    "rosey.platform.console.send",
    "_INBOX_dice.forged",
    "$JS.API.STREAM.CREATE.steal",
]
SUBSCRIBE_TARGETS = [
    ">",
    "rosey.commands.dice.execute",
    "rosey.events.message",
    "_INBOX_ROUTER.>",
    "rosey.manager.>",
]


def _none_exist(*paths: Path) -> bool:
    return not any(path.exists() for path in paths)


async def _attack(bot: BotProcess, tmp_path: Path) -> tuple[dict[str, str], int]:
    """Run ``!attack``; its OS outcomes and how many connections a decoy port received."""
    connections = 0

    def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        writer.close()

    decoy = await asyncio.start_server(accepted, "127.0.0.1", 0)
    port = decoy.sockets[0].getsockname()[1]
    listing = (await bot.manage("list"))["result"]["plugins"]
    dice_pid = next(p["stats"]["pid"] for p in listing if p["name"] == "dice")
    args = [
        str(bot.pid),
        str(dice_pid),
        str(bot.state_dir / "data" / "dice"),
        str(bot.state_dir),
        str(port),
    ]
    request = {
        "command": "attack",
        "args": args,
        "text": "!attack " + " ".join(args),
        "user": {"username": "tester", "rank": 0},
        "channel": "room",
        "platform": "test",
        "correlation_id": "attack",
    }
    assert bot.nc is not None
    try:
        # Straight through the broker (the core imports the plugin's command service): the
        # JSON answer arrives whole, where chat would split a long reply.
        reply = await bot.nc.request(
            "rosey.commands.hostile.execute", json.dumps(request).encode(), timeout=20
        )
    finally:
        decoy.close()
        await decoy.wait_closed()
    return json.loads(json.loads(reply.data)["text"]), connections


async def test_every_forbidden_attempt_is_refused_and_reported(tmp_path: Path) -> None:
    config = "security: {max_violations: 1000}\n"
    async with run_bot(tmp_path, plugins_dirs=[DICE, HOSTILE], config=config) as bot:
        assert bot.nc is not None
        seen: list[Msg] = []
        violations: list[dict[str, Any]] = []
        all_reported = asyncio.Event()
        wanted = {("publish", s) for s in PUBLISH_TARGETS} | {
            ("subscribe", s) for s in SUBSCRIBE_TARGETS
        }

        async def spy(msg: Msg) -> None:
            seen.append(msg)

        async def on_violation(msg: Msg) -> None:
            violations.append(json.loads(msg.data))
            if wanted <= {(v["kind"], v["subject"]) for v in violations}:
                all_reported.set()

        await bot.nc.subscribe(">", cb=spy)
        await bot.nc.subscribe("rosey.security.violation", cb=on_violation)
        await bot.nc.flush()
        before = await bot.manage("status", {"plugin": "dice"})
        assert await bot.chat("!roll 1d1", user="ann") == "ann rolled 1d1: 🎲 1"

        outcomes, connections = await _attack(bot, tmp_path)

        # Kernel: every OS-level attempt met a refusal.
        assert len(outcomes) >= 12
        allowed = {what: how for what, how in outcomes.items() if not how.startswith("refused")}
        assert allowed == {}
        assert connections == 0
        assert _none_exist(
            bot.state_dir / "data" / "dice" / "owned",
            HOSTILE / "owned",
            Path("/tmp/rosey-hostile-owned"),
        )

        # Broker: every bus attempt was refused (nothing reached anyone) and reported.
        async with asyncio.timeout(15):
            await all_reported.wait()
        assert all(v["plugin"] == "hostile" for v in violations)
        assert not [m.subject for m in seen if b'"evil"' in m.data]
        status = await bot.manage("status", {"plugin": "hostile"})
        assert status["ok"] is True
        result = status["result"]
        assert result["enforced"] is True
        assert result["violations"] >= len(wanted)
        assert result["state"] == "running"
        assert result["resources"]["processes"] >= 1
        assert result["resources"]["threads"] >= 1
        assert result["resources"]["open_files"] >= 0
        assert "thread(s)" in await bot.chat("!plugin status hostile")
        assert {"landlock-net", "landlock-signals", "no-capabilities"} <= set(result["layers"])
        assert any(layer.startswith("landlock-abi") for layer in result["layers"])
        assert any("security: plugin hostile" in line for line in bot.log)

        # Everyone else is unharmed and keeps answering.
        after = await bot.manage("status", {"plugin": "dice"})
        assert after["result"]["stats"]["pid"] == before["result"]["stats"]["pid"]
        assert after["result"]["state"] == "running"
        assert await bot.chat("!roll 1d1", user="bob") == "bob rolled 1d1: 🎲 1"
        assert bot.proc.returncode is None


async def test_a_plugin_over_the_violation_limit_is_disabled_with_the_reason(
    tmp_path: Path,
) -> None:
    config = "security: {max_violations: 5, violation_window_s: 60}\n"
    async with run_bot(tmp_path, plugins_dirs=[DICE, HOSTILE], config=config) as bot:
        assert bot.nc is not None
        events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

        async def on_event(msg: Msg) -> None:
            await events.put(json.loads(msg.data))

        await bot.nc.subscribe("rosey.manager.events.hostile", cb=on_event)
        await bot.nc.flush()
        await _attack(bot, tmp_path)
        async with asyncio.timeout(20):
            while (event := await events.get())["state"] != "disabled":
                pass
        assert "permission violations" in event["reason"]
        status = (await bot.manage("status", {"plugin": "hostile"}))["result"]
        assert status["state"] == "disabled"
        assert "more than 5 permission violations" in status["last_error"]
        assert "!attack: plugin hostile is not running" in await bot.chat("!attack 1 2 3 4 5")
        assert await bot.chat("!roll 1d1") == "tester rolled 1d1: 🎲 1"


async def test_external_server_mode_says_not_enforced_and_warns_once(
    tmp_path: Path, nats_url: str
) -> None:
    async with run_bot(tmp_path, plugins_dirs=[DICE], extra_args=["--nats-url", nats_url]) as bot:
        assert bot.runtime["nats_url"] == nats_url
        assert bot.runtime["user"] is None
        assert await bot.chat("!roll 1d1") == "tester rolled 1d1: 🎲 1"
        status = (await bot.manage("status", {"plugin": "dice"}))["result"]
        assert status["enforced"] is False
        warnings = [line for line in bot.log if "not enforced by Rosey" in line]
        assert len(warnings) == 1


async def test_reads_can_be_restricted_to_admins(tmp_path: Path) -> None:
    config = "admins: ['console:console', 'test:boss']\nsecurity: {read_access: admins}\n"
    async with run_bot(tmp_path, plugins_dirs=[DICE], config=config) as bot:
        assert "is not allowed to" in await bot.chat("!plugin list", user="mallory")
        assert "is not allowed to" in await bot.chat("!plugin status dice", user="mallory")
        assert "dice" in await bot.chat("!plugin list", user="boss")
        assert "not allowed" not in await bot.chat("!plugin help", user="mallory")
        assert any("refused: test:mallory" in line for line in bot.log)


async def test_storage_grant_gives_its_own_bucket_and_nobody_elses(tmp_path: Path) -> None:
    kv_user = FIXTURE_PLUGINS / "kv_user"
    async with run_bot(tmp_path, plugins_dirs=[DICE, kv_user]) as bot:
        assert await bot.chat("!kvset colour blue") == "stored colour"
        assert await bot.chat("!kvget colour") == "blue"
        restarted = await bot.manage("restart", {"plugin": "kv_user"})
        assert restarted["ok"] is True
        assert await bot.chat("!kvget colour") == "blue"
        assert (await bot.chat("!kvsteal dice")).startswith("refused")
        assert (await bot.chat("!kvsteal manager")).startswith("refused")


async def test_a_plugin_added_at_runtime_gets_its_identity_without_breaking_replies(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "plugins"
    shutil.copytree(DICE, folder / "dice")
    shutil.copytree(FIXTURE_PLUGINS / "sdk_probe", folder / "sdk_probe")
    async with run_bot(tmp_path, plugins_dirs=[folder]) as bot:
        before = {
            p["name"]: p["stats"]["pid"] for p in (await bot.manage("list"))["result"]["plugins"]
        }
        assert (await bot.manage("rescan"))["result"] == {"added": []}
        slow = asyncio.ensure_future(bot.chat("!slow 1.5 in-flight", timeout=20))
        # Plugins may only reply to the core's inboxes: ping it the way the manager does.
        pinger = await nats.connect(
            bot.runtime["nats_url"],
            user=bot.runtime["user"],
            password=bot.runtime["password"],
            inbox_prefix="_INBOX_MANAGER",
        )

        async def inside() -> bool:
            ping = await pinger.request("rosey.health.sdk_probe.ping", b"{}", timeout=2)
            return bool(json.loads(ping.data).get("in_flight") == 1)

        try:
            await eventually(inside, 10, "the slow command is inside the plugin")
        finally:
            await pinger.close()
        shutil.copytree(FIXTURE_PLUGINS / "kv_user", folder / "kv_user")
        rescan = await bot.manage("rescan")
        assert rescan["ok"] is True
        assert [s["name"] for s in rescan["result"]["added"]] == ["kv_user"]
        assert rescan["result"]["added"][0]["state"] == "stopped"
        assert await slow == "slow 1.5 in-flight done"
        assert any("Reloaded server configuration" in line for line in _server_log(bot))
        started = await bot.manage("start", {"plugin": "kv_user"})
        assert started["result"]["state"] == "running"
        assert await bot.chat("!kvset a b") == "stored a"
        assert (await bot.chat("!kvsteal dice")).startswith("refused")
        after = {
            p["name"]: p["stats"]["pid"] for p in (await bot.manage("list"))["result"]["plugins"]
        }
        assert {k: after[k] for k in before} == before
        assert await bot.chat("!roll 1d1") == "tester rolled 1d1: 🎲 1"


def _server_log(bot: BotProcess) -> list[str]:
    return (bot.state_dir / "nats" / "nats-server.log").read_text().splitlines()
