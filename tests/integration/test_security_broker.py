"""The broker layer (DESIGN 2.5): an account per plugin, quotas, no relays, honest attribution.

A hostile plugin (``tests/fixtures/plugins/broker_hostile``, grants ``storage`` and
``plugins.call:victim``) tries to make the broker or another plugin act for it and to exhaust
the broker; an honest plugin (``victim``, with a bucket) and ``dice`` run beside it. Each test
checks the refusal *and* that the bot, the broker and the victim stay healthy.

Measured figures (broker memory, connections and bytes held at the quotas) are printed; run
with ``-s`` to see them.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import nats
import psutil
from nats.aio.msg import Msg

from botproc import EXAMPLE_PLUGINS, FIXTURE_PLUGINS, BotProcess, run_bot

DICE = EXAMPLE_PLUGINS / "dice"
HOSTILE = FIXTURE_PLUGINS / "broker_hostile"
VICTIM = FIXTURE_PLUGINS / "victim"
PLUGINS = [DICE, VICTIM, HOSTILE]
MIB = 1024 * 1024
#: Where the embedded server gets a memory cgroup (root on this cgroup v1 host).
HOST_MEMORY_CGROUP = os.geteuid() == 0 and Path("/sys/fs/cgroup/memory").is_dir()


async def _command(bot: BotProcess, plugin: str, text: str, timeout: float = 30) -> str:
    """Run a plugin's command straight through the broker (the core's import of its service),
    so a long JSON answer arrives whole (chat would split it)."""
    command, *args = text.split()
    request = {
        "command": command,
        "args": args,
        "text": f"!{text}",
        "user": {"username": "tester", "rank": 0},
        "channel": "room",
        "platform": "test",
        "correlation_id": f"direct-{command}",
    }
    # The router's inbox prefix: without accounts (the layer switched off to check these tests)
    # that is the only reply space plugins may publish to, so the tests fail for the right reason.
    nc = await nats.connect(
        bot.runtime["nats_url"],
        user=bot.runtime["user"],
        password=bot.runtime["password"],
        inbox_prefix="_INBOX_ROUTER",
    )
    try:
        msg = await nc.request(
            f"rosey.commands.{plugin}.execute", json.dumps(request).encode(), timeout=timeout
        )
    finally:
        await nc.close()
    reply = json.loads(msg.data)
    assert reply["ok"] is True, reply
    return str(reply["text"])


async def _status(bot: BotProcess, plugin: str) -> dict[str, Any]:
    reply = await bot.manage("status", {"plugin": plugin})
    assert reply["ok"] is True, reply
    result: dict[str, Any] = reply["result"]
    return result


async def _desired_state(bot: BotProcess) -> dict[str, Any]:
    """The manager's persisted desired state, read from the core account's bucket."""
    assert bot.nc is not None
    kv = await bot.nc.jetstream().key_value("ROSEY_MANAGER")
    entry = await kv.get("desired_state")
    assert entry.value is not None
    plugins: dict[str, Any] = json.loads(entry.value)["plugins"]
    return plugins


def _memory_cgroup(pid: int) -> tuple[str, int]:
    """The cgroup v1 memory folder of ``pid`` and its limit in bytes."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, folder = line.split(":", 2)
        if "memory" in controllers.split(","):
            limit = Path("/sys/fs/cgroup/memory") / folder.lstrip("/") / "memory.limit_in_bytes"
            return folder, int(limit.read_text())
    raise AssertionError(f"pid {pid} is in no memory cgroup")


def _broker(bot: BotProcess) -> psutil.Process:
    found = [
        p for p in psutil.Process(bot.pid).children(recursive=True) if p.name() == "nats-server"
    ]
    assert len(found) == 1, found
    return found[0]


async def _healthy(bot: BotProcess) -> None:
    """The bot, the broker and the honest plugins all still work."""
    assert bot.proc.returncode is None
    assert _broker(bot).is_running()
    assert await bot.chat("!roll 1d1") == "tester rolled 1d1: 🎲 1"
    assert await bot.chat("!whoami", user="ann") == "ann rank 0 on test"
    victim = await _status(bot, "victim")
    assert victim["state"] == "running"
    assert victim["violations"] == 0


class Spy:
    """Everything the core's account sees, and the violation reports."""

    def __init__(self) -> None:
        self.messages: list[Msg] = []
        self.violations: list[dict[str, Any]] = []
        self.changed = asyncio.Event()

    async def attach(self, bot: BotProcess) -> None:
        assert bot.nc is not None

        async def seen(msg: Msg) -> None:
            self.messages.append(msg)

        async def violation(msg: Msg) -> None:
            self.violations.append(json.loads(msg.data))
            self.changed.set()

        await bot.nc.subscribe(">", cb=seen)
        await bot.nc.subscribe("rosey.security.violation", cb=violation)
        await bot.nc.flush()

    async def wait_violations(self, count: int, timeout: float = 15) -> None:
        async with asyncio.timeout(timeout):
            while len(self.violations) < count:
                self.changed.clear()
                await self.changed.wait()

    def leaked(self, *needles: bytes) -> list[str]:
        """Subjects outside the core's own inboxes that carried any of ``needles``."""
        return [
            m.subject
            for m in self.messages
            if not m.subject.startswith("_INBOX") and any(n in m.data for n in needles)
        ]


async def test_server_acks_stay_in_the_account_of_who_caused_them(
    tmp_path: Path, bot_privilege: str
) -> None:
    """Regression: a KV publish whose reply subject was another bucket's key or the manager's
    state made the server write its ack there (an operator's ``disable`` was lost)."""
    async with run_bot(
        tmp_path, plugins_dirs=PLUGINS, unprivileged=(bot_privilege == "unprivileged")
    ) as bot:
        spy = Spy()
        await spy.attach(bot)
        assert await bot.chat("!vset secret kept") == "stored secret"
        assert (await bot.manage("disable", {"plugin": "dice"}))["ok"] is True
        before = await _desired_state(bot)
        assert before["dice"]["enabled"] is False
        targets = [
            "$KV.ROSEY_MANAGER.desired_state",
            "$KV.rosey_victim.secret",
            "rosey.manager.enable",
            "rosey.manager.stop",
            "rosey.commands.victim.execute",
            "rosey.commands.dice.execute",
            "rosey.events.message",
        ]
        outcome = json.loads(await _command(bot, "broker_hostile", "acks " + " ".join(targets)))
        # The publishes happened (its own key holds them) ...
        assert outcome == {"sent": 2 * len(targets), "own": '{"evil": true}'}
        # ... and no ack reached the manager's state, the victim's bucket or any core subject.
        assert await _desired_state(bot) == before
        assert await bot.chat("!vget secret") == "kept"
        leaked = spy.leaked(b"KV_rosey_broker_hostile", b'"evil"', b'"streams"')
        print(f"\nacks seen by the core: {leaked}")
        assert [s for s in leaked if not s.startswith("rosey.relay.broker_hostile.")] == []
        assert (await _status(bot, "dice"))["enabled"] is False
        assert (await bot.manage("enable", {"plugin": "dice"}))["ok"] is True
        assert (await bot.manage("start", {"plugin": "dice"}))["ok"] is True
        assert (await _desired_state(bot))["dice"]["enabled"] is True
        await _healthy(bot)


async def test_a_caller_cannot_frame_a_callee_with_a_reply_subject(
    tmp_path: Path, bot_privilege: str
) -> None:
    """Regression: a caller sent requests with reply subject ``rosey.manager.stop``; the callee
    answered there, the broker counted its refusals, and the callee ended disabled."""
    config = "security: {max_violations: 2, violation_window_s: 60}\n"
    async with run_bot(
        tmp_path,
        plugins_dirs=PLUGINS,
        config=config,
        unprivileged=(bot_privilege == "unprivileged"),
    ) as bot:
        spy = Spy()
        await spy.attach(bot)
        targets = [
            "rosey.manager.stop",
            "rosey.manager.disable",
            "rosey.security.violation",
            "rosey.commands.dice.execute",
            "rosey.platform.test.send",
            "_INBOX_ROUTER.forged",
        ]
        assert await _command(bot, "broker_hostile", "frame " + " ".join(targets)) == "sent 6"
        # A call after the frames: the victim has handled (and, if it would, answered) them all
        # once this returns; its answers went out on its connection before this one.
        await _command(bot, "broker_hostile", "forge")
        assert spy.leaked(b"rank 100", b"console rank") == []
        await _healthy(bot)  # includes: the victim is running with no violations
        assert [v for v in spy.violations if v["plugin"] == "victim"] == []
        assert (await _status(bot, "broker_hostile"))["state"] == "running"


async def test_a_caller_cannot_choose_who_it_claims_to_be(
    tmp_path: Path, bot_privilege: str
) -> None:
    """The core sets ``user``/``platform`` of a plugin-to-plugin call: a caller claiming to be
    the console admin reaches the callee as itself, rank 0, on platform ``plugin``."""
    async with run_bot(
        tmp_path, plugins_dirs=PLUGINS, unprivileged=(bot_privilege == "unprivileged")
    ) as bot:
        assert await _command(bot, "broker_hostile", "forge") == "broker_hostile rank 0 on plugin"
        assert await _command(bot, "broker_hostile", "forge") == "broker_hostile rank 0 on plugin"
        await _healthy(bot)


async def test_a_crafted_client_name_cannot_shift_the_blame(
    tmp_path: Path, bot_privilege: str
) -> None:
    """Regression: a second connection named like another plugin's log fragment made the
    violation parser blame that plugin."""
    config = "security: {max_violations: 1000}\n"
    async with run_bot(
        tmp_path,
        plugins_dirs=PLUGINS,
        config=config,
        unprivileged=(bot_privilege == "unprivileged"),
    ) as bot:
        spy = Spy()
        await spy.attach(bot)
        assert await _command(bot, "broker_hostile", "names victim") == "sent 6"
        await spy.wait_violations(6)
        assert {v["plugin"] for v in spy.violations} == {"broker_hostile"}
        assert {v["subject"] for v in spy.violations} == {"rosey.manager.stop"}
        assert (await _status(bot, "broker_hostile"))["violations"] >= 6
        await _healthy(bot)


async def test_connections_beyond_the_account_quota_are_refused(
    tmp_path: Path, bot_privilege: str
) -> None:
    """Regression: 20 000 connections exhausted the broker's file descriptors."""
    config = "security: {broker: {plugin_connections: 4}}\n"
    async with run_bot(
        tmp_path,
        plugins_dirs=PLUGINS,
        config=config,
        unprivileged=(bot_privilege == "unprivileged"),
    ) as bot:
        outcome = json.loads(await _command(bot, "broker_hostile", "conns 200"))
        print(f"\nconnections accepted at the quota of 4 (1 already used): {outcome}")
        assert outcome["accepted"] == 3
        assert "maximum account active connections" in outcome["refused"]
        await _healthy(bot)
        # Its own connection was not the price: it still answers.
        assert json.loads(await _command(bot, "broker_hostile", "conns 1"))["accepted"] == 1


async def test_subscriptions_beyond_the_quota_are_refused_and_memory_stays_bounded(
    tmp_path: Path, bot_privilege: str
) -> None:
    """Regression: 3 million subscriptions took nats-server from 63 MB to 1.7 GB."""
    async with run_bot(
        tmp_path, plugins_dirs=PLUGINS, unprivileged=(bot_privilege == "unprivileged")
    ) as bot:
        spy = Spy()
        await spy.attach(bot)
        broker = _broker(bot)
        before = broker.memory_info().rss
        outcome = json.loads(await _command(bot, "broker_hostile", "subs 300000", timeout=120))
        after = broker.memory_info().rss
        print(
            f"\nnats-server RSS before {before / MIB:.1f} MiB, after {outcome['attempted']} "
            f"subscriptions attempted: {after / MIB:.1f} MiB ({outcome})"
        )
        assert outcome["attempted"] > 3000
        assert after - before < 16 * MIB
        await spy.wait_violations(1)
        assert {(v["plugin"], v["kind"]) for v in spy.violations} == {("broker_hostile", "quota")}
        await _healthy(bot)


async def test_jetstream_bytes_beyond_the_quota_are_refused_and_the_manager_still_persists(
    tmp_path: Path, bot_privilege: str
) -> None:
    """Regression: 1 GB of KV values filled JetStream and the manager could not save state."""
    config = "security: {broker: {plugin_storage_mb: 8}}\n"
    async with run_bot(
        tmp_path,
        plugins_dirs=PLUGINS,
        config=config,
        unprivileged=(bot_privilege == "unprivileged"),
    ) as bot:
        outcome = json.loads(await _command(bot, "broker_hostile", "fill 64", timeout=120))
        print(f"\nbytes held at the 8 MiB JetStream quota: {outcome['written']} ({outcome})")
        assert 0 < outcome["written"] <= 8 * MIB
        assert outcome["error"]
        assert (await bot.manage("disable", {"plugin": "dice"}))["ok"] is True
        assert (await _desired_state(bot))["dice"]["enabled"] is False
        assert not [line for line in bot.log if "cannot persist the desired state" in line]
        assert await bot.chat("!vset after fill") == "stored after"
        assert (await bot.manage("enable", {"plugin": "dice"}))["ok"] is True
        assert (await bot.manage("start", {"plugin": "dice"}))["ok"] is True
        await _healthy(bot)


async def test_the_core_reaches_every_plugin_and_the_broker_has_a_memory_cgroup(
    tmp_path: Path,
) -> None:
    """The core's account imports every plugin's services (an operator tool connected with
    ``runtime.json`` reaches them); the server runs in a memory cgroup of its own where the host
    has one (here: root, cgroup v1), and says so in the log either way."""
    config = "security: {broker: {server_memory_mb: 300}}\n"
    async with run_bot(tmp_path, plugins_dirs=PLUGINS, config=config) as bot:
        runtime = bot.runtime
        nc = await nats.connect(
            runtime["nats_url"], user=runtime["user"], password=runtime["password"]
        )
        try:
            ping = await nc.request("rosey.health.victim.ping", b"{}", timeout=5)
            assert json.loads(ping.data)["ok"] is True
        finally:
            await nc.close()
        broker = _broker(bot)
        confined = [line for line in bot.log if "nats-server (pid" in line and "confined" in line]
        if not HOST_MEMORY_CGROUP:
            assert any("GOMEMLIMIT (soft)" in line for line in bot.log)
            return
        assert confined, bot.log[-20:]
        folder, limit = _memory_cgroup(broker.pid)
        assert folder.endswith("-broker"), folder
        assert limit == 300 * MIB
        await _healthy(bot)
