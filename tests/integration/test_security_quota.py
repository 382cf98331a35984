"""Quotas on what a plugin may consume of the host: its data folder's disk space, processes.

Hostile fixtures (``tests/fixtures/plugins/diskfill``, ``forkbomb``) run in a real bot next to
a victim plugin (``dice``). Each test checks the refusal *and* that the bot, the broker and the
victim keep working; the disk tests also check that no mount or loop device outlives the bot.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import nats
import psutil
import pytest

import privilege
from botproc import EXAMPLE_PLUGINS, FIXTURE_PLUGINS, BotProcess, run_bot
from helpers import eventually, wait_gone

DICE = EXAMPLE_PLUGINS / "dice"
DISKFILL = FIXTURE_PLUGINS / "diskfill"
FORKBOMB = FIXTURE_PLUGINS / "forkbomb"
MIB = 1024 * 1024
QUOTA_MB = 8  # diskfill's limits.data_mb

LOOP_HOST = os.geteuid() == 0 and os.path.exists("/dev/loop-control")
needs_loop = pytest.mark.skipif(
    not LOOP_HOST, reason="the quota filesystem needs root and loop devices"
)


def leftovers(tmp_path: Path) -> list[str]:
    """Mounts below ``tmp_path`` and loop devices backed by a file below it."""
    with open("/proc/self/mountinfo") as fh:
        mounted = [line.split(" ")[4] for line in fh if str(tmp_path) in line.split(" ")[4]]
    loops = subprocess.run(["losetup", "-a"], capture_output=True, text=True, check=False).stdout
    return mounted + [line for line in loops.splitlines() if str(tmp_path) in line]


async def status(bot: BotProcess, name: str) -> dict[str, Any]:
    reply = await bot.manage("status", {"plugin": name})
    assert reply["ok"] is True, reply
    result: dict[str, Any] = reply["result"]
    return result


async def fill(bot: BotProcess, small_mb: int, big_mb: int) -> dict[str, Any]:
    outcome: dict[str, Any] = json.loads(await bot.chat(f"!fill {small_mb} {big_mb}", timeout=30))
    return outcome


async def victim_and_bot_are_fine(bot: BotProcess, dice_pid: int) -> None:
    assert await bot.chat("!roll 1d1", user="bob") == "bob rolled 1d1: 🎲 1"
    dice = await status(bot, "dice")
    assert (dice["state"], dice["stats"]["pid"]) == ("running", dice_pid)
    assert bot.proc.returncode is None
    # The broker still takes new connections.
    nc = await nats.connect(
        bot.runtime["nats_url"],
        user=bot.runtime["user"],
        password=bot.runtime["password"],
        connect_timeout=2,
        allow_reconnect=False,
    )
    await nc.close()


@needs_loop
async def test_a_plugin_filling_its_data_folder_gets_enospc_and_keeps_its_data(
    tmp_path: Path,
) -> None:
    """Regression (issue 10): the data folder had no quota, a plugin could fill the host's disk."""
    async with run_bot(tmp_path, plugins_dirs=[DICE, DISKFILL]) as bot:
        data_dir = bot.state_dir / "data" / "diskfill"
        image = bot.state_dir / "quota" / "diskfill.img"
        dice_pid = (await status(bot, "dice"))["stats"]["pid"]
        before = await status(bot, "diskfill")
        assert "quota-loop" in before["layers"]
        assert await bot.chat("!note keep me") == "noted"

        # Many small files: the kernel refuses the one that does not fit; the plugin lives on.
        small = (await fill(bot, 64, 0))["small"]
        assert small["error"] == "ENOSPC", small
        assert QUOTA_MB * MIB // 2 < small["written"] <= QUOTA_MB * MIB
        # One big file, after making room.
        assert await bot.chat("!free") == "freed"
        big = (await fill(bot, 0, 64))["big"]
        assert big["error"] == "ENOSPC", big
        assert QUOTA_MB * MIB // 2 < big["written"] <= QUOTA_MB * MIB
        after = await status(bot, "diskfill")
        assert (after["state"], after["stats"]["pid"]) == ("running", before["stats"]["pid"])

        # What it wrote sits in its image, which holds no more than the quota of the host disk.
        fs = os.statvfs(data_dir)
        assert fs.f_blocks * fs.f_frsize <= QUOTA_MB * MIB
        assert fs.f_bavail * fs.f_frsize < MIB  # full
        assert image.stat().st_blocks * 512 <= QUOTA_MB * MIB
        await victim_and_bot_are_fine(bot, dice_pid)

        # A restart keeps the mount and the data.
        restarted = await bot.manage("restart", {"plugin": "diskfill"})
        assert restarted["ok"] is True, restarted
        assert await bot.chat("!recall") == "keep me"
        again = await status(bot, "diskfill")
        assert again["stats"]["pid"] != before["stats"]["pid"]
        assert "quota-loop" in again["layers"]
        assert await bot.terminate() == 0
    assert leftovers(tmp_path) == []
    assert not data_dir.is_mount()
    assert list(data_dir.iterdir()) == []  # everything lives in the image, kept for next time


@needs_loop
async def test_files_already_in_the_data_folder_move_into_its_quota(tmp_path: Path) -> None:
    data_dir = tmp_path / "state" / "data" / "diskfill"
    data_dir.mkdir(parents=True)
    (data_dir / "note.txt").write_text("from before")
    async with run_bot(tmp_path, plugins_dirs=[DISKFILL]) as bot:
        assert "quota-loop" in (await status(bot, "diskfill"))["layers"]
        assert data_dir.is_mount()
        assert await bot.chat("!recall") == "from before"
    assert leftovers(tmp_path) == []
    assert list(data_dir.iterdir()) == []


def warden_of(bot: BotProcess) -> int:
    found = [
        p.pid
        for p in psutil.Process(bot.pid).children()
        if "rosey.sandbox.warden" in " ".join(p.cmdline())
    ]
    assert len(found) == 1, found
    return found[0]


async def no_leftovers(tmp_path: Path, timeout: float) -> None:
    async def clean() -> bool:
        return leftovers(tmp_path) == []

    await eventually(clean, timeout, f"no mount or loop device left below {tmp_path}")


@needs_loop
async def test_a_killed_bot_leaves_no_mount_warden_or_next_start_cleans_up(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "state" / "data" / "diskfill"
    # The bot dies (SIGKILL): its warden unmounts the data folder.
    async with run_bot(tmp_path, plugins_dirs=[DISKFILL]) as bot:
        assert await bot.chat("!note one") == "noted"
        assert data_dir.is_mount()
        bot.proc.kill()
        await bot.proc.wait()
        await no_leftovers(tmp_path, timeout=10)
    # The bot and its warden die: the next start unmounts what was left, and mounts afresh.
    async with run_bot(tmp_path, plugins_dirs=[DISKFILL]) as bot:
        assert await bot.chat("!recall") == "one"
        os.kill(warden_of(bot), signal.SIGKILL)
        bot.proc.kill()
        await bot.proc.wait()
    assert data_dir.is_mount()  # stale, as a crashed bot would leave it
    async with run_bot(tmp_path, plugins_dirs=[DISKFILL]) as bot:
        assert any("left mounted by a previous run" in line for line in bot.log)
        assert await bot.chat("!recall") == "one"
    await no_leftovers(tmp_path, timeout=10)


async def test_too_much_data_from_before_refuses_the_start_and_keeps_the_files(
    tmp_path: Path, bot_privilege: str
) -> None:
    data_dir = tmp_path / "state" / "data" / "diskfill"
    data_dir.mkdir(parents=True)
    (data_dir / "blob").write_bytes(b"x" * (QUOTA_MB + 2) * MIB)
    unprivileged = bot_privilege == "unprivileged"
    if unprivileged:  # the bot's user owns its state folder
        user = privilege.ensure_user()
        for path in (data_dir.parent, data_dir, data_dir / "blob"):
            os.chown(path, user.pw_uid, user.pw_gid)
    async with run_bot(tmp_path, plugins_dirs=[DISKFILL], unprivileged=unprivileged) as bot:
        result = await status(bot, "diskfill")
        assert result["state"] != "running"
        assert f"over its quota of {QUOTA_MB} MB" in result["last_error"], result["last_error"]
    assert leftovers(tmp_path) == []
    assert (data_dir / "blob").stat().st_size == (QUOTA_MB + 2) * MIB


async def test_without_the_quota_filesystem_the_watch_stops_a_plugin_over_its_quota(
    tmp_path: Path, bot_privilege: str
) -> None:
    """The fallback (``security.data_quota: false``, or no root / loop devices): each file is
    capped by ``RLIMIT_FSIZE`` (EFBIG), the folder is measured and a plugin over it is killed.

    As root the fallback is chosen by the config; an unprivileged bot cannot mount, so it
    falls back on its own."""
    unprivileged = bot_privilege == "unprivileged"
    config = None if unprivileged else "security: {data_quota: false}\n"
    async with run_bot(
        tmp_path, plugins_dirs=[DICE, DISKFILL], config=config, unprivileged=unprivileged
    ) as bot:
        dice_pid = (await status(bot, "dice"))["stats"]["pid"]
        assert "quota-watch" in (await status(bot, "diskfill"))["layers"]
        big = (await fill(bot, 0, 64))["big"]
        assert big == {"written": QUOTA_MB * MIB, "error": "EFBIG"}
        # Many small files pass the per-file cap: the watch notices and stops the plugin.
        reply = await bot.chat(f"!fill {3 * QUOTA_MB} 0", timeout=30)
        if reply.startswith("{"):  # else the watch was quicker than the reply
            assert json.loads(reply)["small"]["error"] is None

        async def stopped() -> bool:
            return str((await status(bot, "diskfill"))["state"]) != "running"

        await eventually(stopped, timeout=15, what="diskfill stopped for its data folder")
        result = await status(bot, "diskfill")
        assert f"data folder over its quota of {QUOTA_MB} MB" in result["last_error"], result
        await victim_and_bot_are_fine(bot, dice_pid)

        # Still over its quota: it does not start again.
        started = await bot.manage("start", {"plugin": "diskfill"})
        assert started["ok"] is False
        assert f"over its quota of {QUOTA_MB} MB" in json.dumps(started)
    assert leftovers(tmp_path) == []


async def test_a_fork_bomb_leaves_the_bot_the_broker_and_a_victim_healthy(
    tmp_path: Path, bot_privilege: str
) -> None:
    unprivileged = bot_privilege == "unprivileged"
    async with run_bot(tmp_path, plugins_dirs=[DICE, FORKBOMB], unprivileged=unprivileged) as bot:
        dice_pid = (await status(bot, "dice"))["stats"]["pid"]
        outcome = json.loads(await bot.chat("!forks"))
        bomb = await status(bot, "forkbomb")
        assert bomb["state"] == "running"
        if unprivileged:
            # No cgroups for an ordinary user here: RLIMIT_NPROC in the plugin's own user
            # namespace counts its tree alone (its waiter and init included).
            assert "rlimit-nproc" in bomb["layers"], bomb["layers"]
        else:
            assert any(layer.startswith("cgroup-") for layer in bomb["layers"]), bomb["layers"]
        assert outcome["refused"] > 0, outcome  # pids.max or RLIMIT_NPROC held it
        assert outcome["started"] < 8
        await victim_and_bot_are_fine(bot, dice_pid)
        # A fresh plugin process can still be forked: the host's process table is not full.
        assert (await bot.manage("restart", {"plugin": "dice"}))["ok"] is True
        assert await bot.chat("!roll 1d1", user="cy") == "cy rolled 1d1: 🎲 1"
        # Host pids of everything the bot started (the bomb's own list may be namespaced).
        pids = bot.descendants()
        assert len(pids) > outcome["started"]
        assert await bot.terminate() == 0
    assert await wait_gone(pids, timeout=5) == []
    assert leftovers(tmp_path) == []
