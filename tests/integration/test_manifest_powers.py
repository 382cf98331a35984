"""Names and the powers a manifest takes for itself, and who is an admin, through the real bot.

Regressions pinned (issue 10), each with a real fixture plugin that tries it:

- a folder that sorts first and declares another plugin's ``name:`` took its config, data
  folder and bucket (``impostor``);
- ``critical: true`` in a manifest let a plugin stop the bot by crash-looping
  (``critical_crasher``);
- ``stop_timeout_s: 86400`` plus an ignored SIGTERM held the bot's shutdown hostage
  (``holds_shutdown``); ``health.start_timeout_s: 86400`` plus an ``on_start`` that never
  returns kept the bot from coming up, deaf to SIGTERM (``holds_startup``);
- limits were taken as written: 1 TB, 102400 % CPU, a million open files (``greedy_limits``);
- a user called ``console`` or ``irc:alice`` on any platform, or a guest using an admin's
  name, was an admin.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import time
from pathlib import Path
from typing import Any

from nats.aio.msg import Msg

from botproc import EXAMPLE_PLUGINS, FIXTURE_PLUGINS, BotProcess, run_bot, run_rosey
from helpers import eventually, wait_gone

DICE = EXAMPLE_PLUGINS / "dice"
_ids = itertools.count()


async def _status(bot: BotProcess, name: str) -> dict[str, Any]:
    reply = await bot.manage("status", {"plugin": name})
    assert reply["ok"] is True, reply
    result: dict[str, Any] = reply["result"]
    return result


async def _state_is(bot: BotProcess, name: str, state: str) -> bool:
    return bool((await _status(bot, name))["state"] == state)


async def test_two_folders_declaring_one_name_run_neither(
    tmp_path: Path, bot_privilege: str
) -> None:
    plugins = tmp_path / "plugins"
    shutil.copytree(DICE, plugins / "dice")
    # Sorts first: under "first folder wins" it would be dice, with dice's config and data.
    shutil.copytree(FIXTURE_PLUGINS / "impostor", plugins / "aaa_dice")
    genuine, impostor = plugins / "dice", plugins / "aaa_dice"

    code, out, _ = await run_rosey("plugin", "validate", str(plugins), timeout=20)
    assert code == 1
    lines = out.splitlines()
    assert len(lines) == 2, lines
    for line in lines:
        assert "plugin name 'dice' is declared by 2 folders" in line
        assert str(genuine) in line
        assert str(impostor) in line

    config = "plugins:\n  dice: {config: {max_dice: 7}}\n"
    async with run_bot(
        tmp_path,
        plugins_dirs=[plugins],
        config=config,
        unprivileged=(bot_privilege == "unprivileged"),
    ) as bot:
        status = await _status(bot, "dice")
        assert status["state"] == "disabled"
        assert status["stats"]["pid"] is None
        for folder in (genuine, impostor):
            assert str(folder) in status["last_error"]
        refused = await bot.manage("enable", {"plugin": "dice"})
        assert refused["ok"] is False
        assert str(impostor) in refused["error"]["message"]
        assert (await bot.manage("start", {"plugin": "dice"}))["ok"] is False
        assert not (await bot.chat("!roll 1d1")).startswith("impostor")
        assert not (bot.state_dir / "data" / "dice" / "impostor-was-here").exists()
        said = [line for line in bot.log if "declared by 2 folders" in line]
        assert all(str(genuine) in line and str(impostor) in line for line in said)
        assert sum("plugin skipped" in line for line in said) == 2  # one per folder
        assert sum("→ disabled" in line for line in said) == 1


async def test_a_manifest_cannot_make_itself_critical(tmp_path: Path, bot_privilege: str) -> None:
    config = (
        "max_crash_count: 2\ncrash_window_s: 60\n"
        "backoff: {initial_s: 0.05, max_s: 0.1, jitter: 0}\n"
    )
    async with run_bot(
        tmp_path,
        plugins_dirs=[DICE, FIXTURE_PLUGINS / "critical_crasher"],
        config=config,
        unprivileged=(bot_privilege == "unprivileged"),
    ) as bot:
        await eventually(
            lambda: _state_is(bot, "critical_crasher", "disabled"),
            30,
            "critical_crasher crash-looped into disabled",
        )
        status = await _status(bot, "critical_crasher")
        assert status["critical"] is False
        assert any("critical: true in the manifest is ignored" in n for n in status["bounds"])
        # The bot keeps running and serving.
        assert bot.proc.returncode is None
        assert await bot.chat("!roll 1d1", user="ann") == "ann rolled 1d1: 🎲 1"
        assert (await bot.manage("list"))["ok"] is True
        said = [line for line in bot.log if "critical: true in the manifest is ignored" in line]
        assert len(said) == 1, said  # once, not at every restart
    assert not any("critical plugin critical_crasher" in line for line in bot.log)


async def test_the_operator_can_still_make_it_critical(tmp_path: Path) -> None:
    config = (
        "max_crash_count: 2\ncrash_window_s: 60\n"
        "backoff: {initial_s: 0.05, max_s: 0.1, jitter: 0}\n"
        "plugins:\n  critical_crasher: {critical: true}\n"
    )
    async with run_bot(
        tmp_path,
        plugins_dirs=[FIXTURE_PLUGINS / "critical_crasher"],
        config=config,
        ready=False,
    ) as bot:
        async with asyncio.timeout(30):
            code = await bot.proc.wait()
        assert code == 1
        assert any("critical plugin critical_crasher is disabled" in line for line in bot.log)


async def test_a_manifest_cannot_hold_the_shutdown_hostage(
    tmp_path: Path, bot_privilege: str
) -> None:
    config = "limits_max: {stop_timeout_s: 2}\n"
    async with run_bot(
        tmp_path,
        plugins_dirs=[FIXTURE_PLUGINS / "holds_shutdown"],
        config=config,
        unprivileged=(bot_privilege == "unprivileged"),
    ) as bot:
        assert await bot.chat("!hostage") == "you will wait"
        status = await _status(bot, "holds_shutdown")
        assert "stop_timeout_s capped from 86400 to 2 by limits_max" in status["bounds"]
        pid = status["stats"]["pid"]
        started = time.monotonic()
        code = await bot.terminate(timeout=20)
        took = time.monotonic() - started
    assert code == 0
    assert took < 2 + 6, f"the bot took {took:.1f} s to stop"
    assert await wait_gone([pid], timeout=5) == []


async def test_a_manifest_cannot_hold_the_startup_hostage(
    tmp_path: Path, bot_privilege: str
) -> None:
    config = "limits_max: {start_timeout_s: 3}\n"
    started = time.monotonic()
    async with run_bot(
        tmp_path,
        plugins_dirs=[DICE, FIXTURE_PLUGINS / "holds_startup"],
        config=config,
        unprivileged=(bot_privilege == "unprivileged"),
    ) as bot:
        took = time.monotonic() - started
        assert took < 3 + 12, f"the bot took {took:.1f} s to come up"
        status = await _status(bot, "holds_startup")
        assert "health.start_timeout_s capped from 86400 to 3 by limits_max" in status["bounds"]
        assert status["state"] != "running"
        assert "not ready within 3 s" in status["last_error"]
        assert await bot.chat("!roll 1d1", user="ann") == "ann rolled 1d1: 🎲 1"
        assert await bot.terminate() == 0


async def test_absurd_limits_are_capped_and_shown(tmp_path: Path, bot_privilege: str) -> None:
    async with run_bot(
        tmp_path,
        plugins_dirs=[FIXTURE_PLUGINS / "greedy_limits"],
        unprivileged=(bot_privilege == "unprivileged"),
    ) as bot:
        status = await _status(bot, "greedy_limits")
        assert status["state"] == "running"
        assert status["limits"] == {
            "memory_mb": 1024,
            "cpu_percent": 100,
            "max_processes": 64,
            "open_files": 1024,
            "data_mb": 1024,
        }
        assert status["bounds"] == [
            "limits.memory_mb capped from 1048576 to 1024 by limits_max",
            "limits.cpu_percent capped from 102400 to 100 by limits_max",
            "limits.max_processes capped from 4096 to 64 by limits_max",
            "limits.open_files capped from 1048576 to 1024 by limits_max",
            "limits.data_mb capped from 1048576 to 1024 by limits_max",
        ]
        # What the kernel holds it to, as the plugin sees it.
        seen = json.loads(await bot.chat("!mylimits"))
        assert seen["open_files"] == [1024, 1024]
        _, out, _ = await run_rosey(
            "plugin", "status", "greedy_limits", "--state-dir", str(bot.state_dir), timeout=20
        )
        assert "bounded: limits.open_files capped from 1048576 to 1024 by limits_max" in out
        assert sum("greedy_limits: limits." in line for line in bot.log) == 5


async def _say(bot: BotProcess, text: str, user: dict[str, Any], platform: str = "test") -> str:
    """Say ``text`` as ``user`` on ``platform``; the bot's reply text."""
    assert bot.nc is not None
    replies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def on_reply(msg: Msg) -> None:
        await replies.put(json.loads(msg.data))

    subscription = await bot.nc.subscribe(f"rosey.platform.{platform}.send", cb=on_reply)
    try:
        await bot.nc.flush()
        message = {
            "id": f"spoof{next(_ids)}",
            "platform": platform,
            "channel": "room",
            "user": user,
            "text": text,
            "timestamp": time.time(),
        }
        await bot.nc.publish("rosey.events.message", json.dumps(message).encode())
        async with asyncio.timeout(10):
            while True:
                reply = await replies.get()
                if reply.get("in_reply_to") == message["id"]:
                    return str(reply["text"])
    finally:
        await subscription.unsubscribe()


async def test_admin_spoofing_is_refused(tmp_path: Path) -> None:
    config = "admins: ['console:console', 'irc:alice', 'test:boss', 'test:rank>=50']\n"
    async with run_bot(tmp_path, plugins_dirs=[DICE], config=config) as bot:
        spoofs = [
            {"username": "console", "rank": 10},  # the console's name, on another platform
            {"username": "irc:alice", "rank": 0},  # a name that spells an entry
            {"username": "console:console", "rank": 0},
            {"username": "boss", "rank": 0, "guest": True},  # a guest with an admin's name
            {"username": "rank>=50", "rank": 49},
        ]
        for user in spoofs:
            reply = await _say(bot, "!plugin stop dice", user)
            assert "is not allowed to stop plugins" in reply, (user, reply)
            assert (await _status(bot, "dice"))["state"] == "running", user
        refusals = [line for line in bot.log if "is not an admin and tried" in line]
        assert len(refusals) == len(spoofs)
        assert any("test:boss (rank 0, guest)" in line for line in refusals)

        assert "stopped" in await _say(bot, "!plugin stop dice", {"username": "boss", "rank": 0})
        assert (await _status(bot, "dice"))["state"] == "stopped"
        assert "running" in await _say(bot, "!plugin start dice", {"username": "mod", "rank": 50})


async def test_a_stop_during_the_start_does_not_wait_for_a_plugin_that_never_gets_ready(
    tmp_path: Path,
) -> None:
    """Regression: SIGTERM while ``start_all`` waited for a plugin was ignored until its start
    timeout ran out (the stop event was awaited only after ``start_all`` returned)."""
    config = "limits_max: {start_timeout_s: 60}\n"
    async with run_bot(
        tmp_path,
        plugins_dirs=[DICE, FIXTURE_PLUGINS / "holds_startup"],
        config=config,
        ready=False,
    ) as bot:

        async def holding() -> bool:  # its on_start runs; the bot waits for it to get ready
            log = bot.state_dir / "logs" / "holds_startup.log"
            return log.exists() and "never ready" in log.read_text()

        await eventually(holding, timeout=30, what="holds_startup's on_start running")
        pids = bot.descendants()
        started = time.monotonic()
        assert await bot.terminate(timeout=20) == 0
        took = time.monotonic() - started
        assert took < 20, f"stopping took {took:.1f} s"
        assert any("stopping while plugins start" in line for line in bot.log)
    assert await wait_gone(pids, timeout=5) == []
