"""No orphans: a SIGKILLed ``rosey run`` leaves no plugin, no grandchild and no nats-server.

The bot's warden (``rosey.sandbox.warden``) notices the bot's death and kills every plugin
cgroup / process group and the embedded server; a second bot on the same state dir then starts
cleanly. These tests run the real ``rosey run`` as a subprocess (``tests/botproc.py``).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import psutil

from botproc import EXAMPLE_PLUGINS, FIXTURE_PLUGINS, BotProcess, run_bot
from helpers import wait_gone
from rosey.sandbox.cgroups import GROUP_PREFIX, family_name
from rosey.sandbox.host import detect_host

PLUGINS = (EXAMPLE_PLUGINS / "dice", FIXTURE_PLUGINS / "forker")


def warden_of(bot: BotProcess) -> int:
    found = [
        p.pid
        for p in psutil.Process(bot.pid).children()
        if "rosey.sandbox.warden" in " ".join(p.cmdline())
    ]
    assert len(found) == 1, found
    return found[0]


def bot_cgroups(state_dir: Path, bot_pid: int) -> list[Path]:
    """The cgroup group folders a bot with ``bot_pid`` created, in every hierarchy."""
    prefix = f"{GROUP_PREFIX}{family_name(state_dir)}-{bot_pid}-"
    return [
        folder for own in detect_host().hierarchies.values() for folder in own.glob(prefix + "*")
    ]


async def wait_for_line(bot: BotProcess, needle: str, timeout: float) -> str:
    """A line of the bot's stderr (the warden writes there too), once it has been read."""
    async with asyncio.timeout(timeout):
        while True:
            found = [line for line in bot.log if needle in line]
            if found:
                return found[-1]
            await asyncio.sleep(0.02)


async def plugin_tree(bot: BotProcess) -> tuple[set[int], dict[str, int]]:
    """Every descendant of the bot now, and the forker fixture's own pids."""
    forker = json.loads(await bot.chat("!pids"))
    tree = set(bot.descendants()) | set(forker.values())
    return tree, forker


async def test_sigkill_of_the_bot_leaves_nothing_and_a_second_bot_starts_cleanly(
    tmp_path: Path,
) -> None:
    async with run_bot(tmp_path, plugins_dirs=PLUGINS) as bot:
        assert await bot.chat("!roll 1d1", user="ann") == "ann rolled 1d1: 🎲 1"
        tree, forker = await plugin_tree(bot)
        assert forker["grandchild"] in tree
        assert os.getsid(forker["grandchild"]) != os.getsid(forker["plugin"])
        assert bot.runtime["nats_url"]  # the embedded server is among the descendants
        first_pid = bot.pid

        bot.proc.kill()
        await bot.proc.wait()
        assert await wait_gone(tree, timeout=10) == []
        line = await wait_for_line(bot, "rosey warden", timeout=10)
        assert f"bot (pid {first_pid}) is gone" in line
    assert bot_cgroups(bot.state_dir, first_pid) == []

    async with run_bot(tmp_path, plugins_dirs=PLUGINS) as second:
        assert second.state_dir == bot.state_dir
        assert await second.chat("!roll 1d1", user="bob") == "bob rolled 1d1: 🎲 1"
        tree, _ = await plugin_tree(second)
        assert await second.terminate() == 0, "\n".join(second.log[-30:])
    assert await wait_gone(tree, timeout=10) == []
    assert bot_cgroups(second.state_dir, second.pid) == []


async def test_warden_is_out_of_reach_of_ctrl_c_and_still_does_its_job(tmp_path: Path) -> None:
    async with run_bot(tmp_path, plugins_dirs=PLUGINS) as bot:
        warden = warden_of(bot)
        # Ctrl-C signals the terminal's foreground process group: the warden is not in it.
        assert os.getpgid(warden) != os.getpgid(bot.pid)
        assert os.getsid(warden) != os.getsid(bot.pid)
        os.kill(warden, signal.SIGINT)  # and a SIGINT sent to it anyway is ignored
        tree, forker = await plugin_tree(bot)
        assert warden in tree
        assert forker["grandchild"] in tree

        bot.proc.kill()
        await bot.proc.wait()
        # Only the warden can reach the forker's child and setsid'd grandchild.
        assert await wait_gone(tree, timeout=10) == []
