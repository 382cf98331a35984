"""Process reach: a plugin with no grants cannot touch any process outside its own tree.

The ``reach`` fixture tries ``prlimit`` (RLIMIT_CPU=1, RLIMIT_NOFILE=10), signals, ``ptrace``,
``sched_setaffinity``, ``setpriority``, ``getsid``/``getpgid``/``kill(pid, 0)`` on the bot, the
warden, nats-server and a victim plugin (dice: the pid the manager shows and every process of
its tree), probes pids to find others, and uses SysV IPC. Every attempt must be refused, and
afterwards the bot, the broker, the warden and dice must be healthy and answering.

With every layer on, one attack may be stopped by several (PID namespace, seccomp, Landlock,
the plugin's own uid). The tests that switch layers off use probes only one layer stops:
``getpgid`` answers ESRCH only because of the PID namespace, a queue missing from the host's
IPC namespace only because of the plugin's own, ``kill(pid, 0)``/reading rlimits EPERM with
nothing else on only because of another uid.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import stat
import struct
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest

import privilege
from botproc import EXAMPLE_PLUGINS, FIXTURE_PLUGINS, BotProcess, run_bot

REACH = FIXTURE_PLUGINS / "reach"
DICE = EXAMPLE_PLUGINS / "dice"
_IPC_RMID = 0
_libc = ctypes.CDLL(None, use_errno=True)
#: A small uid range for the tests that need per-plugin uids to be usable as root.
UID_RANGE = (61184, 61187)


def _children(pid: int, needle: str) -> list[int]:
    return [p.pid for p in psutil.Process(pid).children() if needle in " ".join(p.cmdline())]


async def targets(bot: BotProcess) -> dict[str, list[int]]:
    """The real pids of everything the plugin must not reach, by role."""
    (warden,) = _children(bot.pid, "rosey.sandbox.warden")
    (server,) = _children(bot.pid, "nats-server")
    listing = (await bot.manage("list"))["result"]["plugins"]
    dice = next(p["stats"]["pid"] for p in listing if p["name"] == "dice")
    dice_tree = [dice, *(p.pid for p in psutil.Process(dice).children(recursive=True))]
    return {"bot": [bot.pid], "warden": [warden], "nats-server": [server], "dice": dice_tree}


_ACL = "system.posix_acl_access"
_USER_OBJ, _USER, _GROUP_OBJ, _MASK, _OTHER, _X = 0x01, 0x02, 0x04, 0x10, 0x20, 1


def add_traverse(path: Path, uids: range) -> None:
    """Let each of ``uids`` pass through the folders leading to ``path`` it could not pass.

    Adds ``user:<uid>:--x`` entries to the folders' ACLs and keeps every entry already there
    (``privilege.grant_traverse`` replaces the ACL: it would take the test user's away).
    """
    for folder in privilege.folders_leading_to(path):
        mode = folder.stat().st_mode
        if mode & stat.S_IXOTH:
            continue
        try:
            raw = os.getxattr(folder, _ACL)
            entries = {(tag, uid): perm for tag, perm, uid in struct.iter_unpack("<HHI", raw[4:])}
        except OSError:
            entries = {
                (_USER_OBJ, 0xFFFFFFFF): (mode >> 6) & 7,
                (_GROUP_OBJ, 0xFFFFFFFF): (mode >> 3) & 7,
                (_OTHER, 0xFFFFFFFF): mode & 7,
            }
        for uid in uids:
            entries[(_USER, uid)] = entries.get((_USER, uid), 0) | _X
        mask = (_MASK, 0xFFFFFFFF)
        entries[mask] = entries.get(mask, entries[(_GROUP_OBJ, 0xFFFFFFFF)]) | _X
        body = b"".join(
            struct.pack("<HHI", tag, perm, uid) for (tag, uid), perm in sorted(entries.items())
        )
        os.setxattr(folder, _ACL, struct.pack("<I", 2) + body)


def limits_of(pid: int) -> dict[str, str]:
    """``/proc/PID/limits`` soft values by name (readable where ``prlimit`` may not be: this
    host's root lacks CAP_SYS_RESOURCE, which reading another uid's limits needs)."""
    lines = Path(f"/proc/{pid}/limits").read_text().splitlines()[1:]
    return {line[:26].strip(): line[26:47].strip() for line in lines}


def untouched(pid: int) -> None:
    """Still alive, not stopped, limits as they were."""
    proc = psutil.Process(pid)
    assert proc.status() not in (psutil.STATUS_STOPPED, psutil.STATUS_ZOMBIE), (pid, proc.status())
    limits = limits_of(pid)
    assert limits["Max cpu time"] == "unlimited", (pid, limits)
    assert int(limits["Max open files"]) > 10, (pid, limits)
    assert os.sched_getaffinity(pid) == os.sched_getaffinity(0), pid
    assert os.getpriority(os.PRIO_PROCESS, pid) != 19, pid


async def all_healthy(bot: BotProcess, pids: dict[str, list[int]], dice_pid: int) -> None:
    """The bot, the broker, the warden and dice are unharmed and keep answering."""
    for group in pids.values():
        for pid in group:
            untouched(pid)
    assert bot.proc.returncode is None
    assert await bot.chat("!roll 1d1", user="ann") == "ann rolled 1d1: 🎲 1"
    status = (await bot.manage("status", {"plugin": "dice"}))["result"]
    assert status["state"] == "running"
    assert status["stats"]["pid"] == dice_pid
    assert (await bot.manage("status", {"plugin": "reach"}))["result"]["state"] == "running"


def _data(bot: BotProcess, name: str) -> Any:
    return json.loads((bot.state_dir / "data" / "reach" / name).read_text())


async def test_no_process_outside_its_tree_can_be_reached(
    tmp_path: Path, bot_privilege: str
) -> None:
    unprivileged = bot_privilege == "unprivileged"
    async with run_bot(tmp_path, plugins_dirs=[DICE, REACH], unprivileged=unprivileged) as bot:
        pids = await targets(bot)
        dice_pid = pids["dice"][0]
        flat = [pid for group in pids.values() for pid in group]
        assert await bot.chat("!reach " + " ".join(map(str, flat)), timeout=30) == (
            f"done {10 * len(flat)}"
        )
        report = _data(bot, "reach.json")
        allowed = {what: how for what, how in report["outcomes"].items() if how == "allowed"}
        assert allowed == {}
        # Only its own namespace is visible: init (1), itself (2), nothing of the host.
        assert report["visible"] == [1, 2]

        status = (await bot.manage("status", {"plugin": "reach"}))["result"]
        layers = set(status["layers"])
        assert {"pidns", "ipcns"} <= layers
        assert ("userns" in layers) is unprivileged
        assert ("uid" in layers or "missing:uid" in layers) is not unprivileged
        assert not [
            layer for layer in layers if layer.startswith("missing:") and layer != "missing:uid"
        ]
        await all_healthy(bot, pids, dice_pid)


@pytest.mark.parametrize("pid_namespace", [True, False])
async def test_pid_discovery_is_stopped_by_the_pid_namespace(
    tmp_path: Path, bot_privilege: str, pid_namespace: bool
) -> None:
    """Only the PID namespace turns ``getpgid`` on the bot into ESRCH; switched off, it finds
    the bot (what the other layers let through here is only this look)."""
    config = f"security: {{pid_namespace: {str(pid_namespace).lower()}}}\n"
    async with run_bot(
        tmp_path,
        plugins_dirs=[DICE, REACH],
        config=config,
        unprivileged=bot_privilege == "unprivileged",
    ) as bot:
        pids = await targets(bot)
        flat = [pid for group in pids.values() for pid in group]
        assert await bot.chat("!find " + " ".join(map(str, flat))) == f"found {len(flat)}"
        found = _data(bot, "find.json")
        outcomes = {found[str(pid)]["getpgid"] for pid in flat}
        assert outcomes == ({"refused: ESRCH"} if pid_namespace else {"allowed"})
        whoami = json.loads(await bot.chat("!whoami"))
        # Forked into namespaces the fork server made: pid 2 beside init, the bot its parent,
        # outside (so getppid() says 0); no waiter between.
        assert (whoami["pid"], whoami["ppid"]) == (2, 0) if pid_namespace else whoami["pid"] > 2
        status = (await bot.manage("status", {"plugin": "reach"}))["result"]
        assert ("pidns" in status["layers"]) is pid_namespace
        await all_healthy(bot, pids, pids["dice"][0])


def _host_ipc(key: int) -> dict[str, int]:
    """The ids of a queue and a segment with ``key`` in the test's (the host's) IPC namespace."""
    return {
        "queue": _libc.msgget(ctypes.c_int(key), 0),
        "segment": _libc.shmget(ctypes.c_int(key), ctypes.c_size_t(0), 0),
    }


def _remove_host_ipc(key: int) -> None:
    ids = _host_ipc(key)
    if ids["queue"] >= 0:
        _libc.msgctl(ids["queue"], _IPC_RMID, None)
    if ids["segment"] >= 0:
        _libc.shmctl(ids["segment"], _IPC_RMID, None)


@pytest.mark.parametrize("ipc_namespace", [True, False])
async def test_sysv_ipc_stays_inside_the_plugin(
    tmp_path: Path, bot_privilege: str, ipc_namespace: bool
) -> None:
    """A queue and a segment the plugin creates are visible neither on the host nor to a
    second plugin. Seccomp (which refuses SysV IPC outright) is off here, so that the IPC
    namespace is the only layer: switched off too, the host sees them."""
    key = 0x52000000 + os.getpid() % 0xFFFF
    _remove_host_ipc(key)
    twin = tmp_path / "plugins" / "twin"
    twin.mkdir(parents=True)
    for item in REACH.iterdir():
        if item.is_file():
            text = item.read_text().replace("name: reach", "name: twin")
            text = text.replace(
                "commands: [reach, find, whoami, ipcmake, ipcsee]", "commands: [twinsee]"
            )
            (twin / item.name).write_text(text)
    (twin / "reach.py").write_text(
        (REACH / "reach.py").read_text().replace('@command("ipcsee")', '@command("twinsee")')
    )
    os.chmod(tmp_path, 0o755)
    for folder in (tmp_path / "plugins", twin):
        os.chmod(folder, 0o755)
    config = f"security: {{seccomp: false, ipc_namespace: {str(ipc_namespace).lower()}}}\n"
    try:
        async with run_bot(
            tmp_path,
            plugins_dirs=[DICE, REACH, twin],
            config=config,
            unprivileged=bot_privilege == "unprivileged",
        ) as bot:
            pids = await targets(bot)
            made = json.loads(await bot.chat(f"!ipcmake {key}"))
            assert made == {"queue": "allowed", "segment": "allowed"}
            assert json.loads(await bot.chat(f"!ipcsee {key}")) == {
                "queue": "exists",
                "segment": "exists",
            }
            host = _host_ipc(key)
            twin_sees = json.loads(await bot.chat(f"!twinsee {key}"))
            if ipc_namespace:
                assert host == {"queue": -1, "segment": -1}
                assert twin_sees == {"queue": "ENOENT", "segment": "ENOENT"}
            else:
                assert host["queue"] >= 0, host
                assert host["segment"] >= 0, host
            await all_healthy(bot, pids, pids["dice"][0])
    finally:
        _remove_host_ipc(key)


@pytest.mark.skipif(os.geteuid() != 0, reason="per-plugin uids need a root bot")
@pytest.mark.parametrize("plugin_uids", [True, False])
async def test_a_plugin_of_its_own_uid_cannot_reach_others_even_alone(
    tmp_path: Path, plugin_uids: bool
) -> None:
    """With the PID namespace, Landlock and seccomp off, the plugin's own uid alone refuses
    ``kill(pid, 0)`` and ``prlimit`` on the bot (root) and on dice (another uid); switched off
    too, both get through. Its data folder is its own, 0700."""
    (tmp_path / "state").mkdir()
    uids = range(UID_RANGE[0], UID_RANGE[1] + 1)
    add_traverse(Path(sys.executable), uids)
    add_traverse(tmp_path / "state" / "x", uids)
    config = (
        "security: {pid_namespace: false, landlock: false, seccomp: false, "
        f"plugin_uids: {str(plugin_uids).lower()}, "
        f"plugin_uid_range: [{UID_RANGE[0]}, {UID_RANGE[1]}]}}\n"
    )
    async with run_bot(tmp_path, plugins_dirs=[DICE, REACH], config=config) as bot:
        pids = await targets(bot)
        targets_ = [bot.pid, pids["dice"][0]]
        assert await bot.chat("!find " + " ".join(map(str, targets_))) == "found 2"
        found = _data(bot, "find.json")
        whoami = json.loads(await bot.chat("!whoami"))
        status = (await bot.manage("status", {"plugin": "reach"}))["result"]
        data = bot.state_dir / "data" / "reach"
        if plugin_uids:
            assert UID_RANGE[0] <= whoami["uid"] <= UID_RANGE[1], "\n".join(bot.log[-20:])
            assert whoami["gid"] == whoami["uid"]
            assert "uid" in status["layers"]
            assert (data.stat().st_uid, data.stat().st_mode & 0o777) == (whoami["uid"], 0o700)
            dice_uid = psutil.Process(pids["dice"][0]).uids().real
            assert dice_uid not in (0, whoami["uid"])
            expected = {"kill0": "refused: EPERM", "prlimit read": "refused: EPERM"}
        else:
            assert whoami["uid"] == 0
            expected = {"kill0": "allowed", "prlimit read": "allowed"}
        for pid in targets_:
            assert {k: found[str(pid)][k] for k in expected} == expected
        assigned = json.loads((bot.state_dir / "uids.json").read_text()) if plugin_uids else {}
        await all_healthy(bot, pids, pids["dice"][0])
    if plugin_uids:
        # Stable across restarts of the bot: the same uid again.
        async with run_bot(tmp_path, plugins_dirs=[DICE, REACH], config=config) as bot:
            assert json.loads(await bot.chat("!whoami"))["uid"] == assigned["reach"]


@pytest.mark.skipif(os.geteuid() != 0, reason="per-plugin uids need a root bot")
async def test_a_plugin_folder_its_uid_cannot_read_is_a_clear_start_error(tmp_path: Path) -> None:
    """A plugin in a 0700 home: it does not start, and ``last_error`` names the folder, the
    uid, the folder in the way and both ways out."""
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    shutil.copytree(REACH, home / "reach")
    (tmp_path / "state").mkdir()
    uids = range(UID_RANGE[0], UID_RANGE[1] + 1)
    add_traverse(Path(sys.executable), uids)
    add_traverse(tmp_path / "state" / "x", uids)
    config = (
        f"max_crash_count: 0\nsecurity: {{plugin_uid_range: [{UID_RANGE[0]}, {UID_RANGE[1]}]}}\n"
    )
    async with run_bot(tmp_path, plugins_dirs=[DICE, home], config=config) as bot:
        status = (await bot.manage("status", {"plugin": "reach"}))["result"]
        assert status["state"] in ("crashed", "disabled"), status
        error = status["last_error"]
        assert f"plugin folder {home / 'reach'} is not readable by the plugin's own uid" in error
        assert f"{home} may not be entered by others" in error
        assert "chmod o+rx" in error
        assert "security.plugin_uids: false" in error
        assert await bot.chat("!roll 1d1", user="ann") == "ann rolled 1d1: 🎲 1"
