"""The standby (``rosey.sandbox.standby``): a process forked ahead of time, in a cgroup leaf of
its own, that the next plugin start becomes; real processes, real cgroups, a real bot.

It is the bot's child, holds nothing a plugin could use, dies with its parent, and is replaced
when it dies, removed with its leaf when the fork server is replaced and on stop. A plugin
started from it is it (same pid), confined like one forked directly (its leaf holds only its
tree, the memory and process limits stop the hostile fixtures), with exact exit codes and its
output in the log. A plugin restarted by the bot is the standby seen before the crash; a
SIGKILLed bot leaves nothing, standby included (as root and unprivileged).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import pytest
from test_cgroup_restart import wait_done
from test_forkserver import command, until_ready, what_it_holds
from test_isolation_reach import DICE
from test_sandbox import HOST, make_spec, needs

from botproc import BotProcess, run_bot
from helpers import eventually, wait_gone
from rosey.sandbox.cgroups import AttachPrimer
from rosey.sandbox.confine import Sandbox
from rosey.sandbox.forkserver import ORPHANED
from rosey.sandbox.forkspawner import ForkSpawner
from rosey.sandbox.host import detect_host
from rosey.sandbox.limits import ResourceLimits
from rosey.sandbox.orphans import reaper
from rosey.sandbox.plugin_process import Confinement, PluginProcess
from rosey.sandbox.standby import Standby


@contextlib.asynccontextmanager
async def standby_box() -> AsyncIterator[Sandbox]:
    """A sandbox on this host's cgroups with its fork server started; checked clean after."""
    box = Sandbox(detect_host(), family=f"test{uuid.uuid4().hex[:10]}")
    box.open()
    dirs = box.cgroup_dirs
    try:
        await box.start_fork_server()
        yield box
    finally:
        box.close()
        assert [d for d in dirs if d.exists()] == []


@pytest.fixture
async def box() -> AsyncIterator[Sandbox]:
    async with standby_box() as sandbox:
        yield sandbox


def spawner_of(box: Sandbox) -> ForkSpawner:
    spawner = box.spawner()
    assert isinstance(spawner, ForkSpawner)
    return spawner


async def ready_standby(spawner: ForkSpawner, other_than: int | None = None) -> Standby:
    async def ready() -> bool:
        return spawner.standby is not None and spawner.standby.pid != other_than

    await eventually(ready, timeout=10, what="a standby is ready")
    assert spawner.standby is not None
    return spawner.standby


def leaves(box: Sandbox, name: str) -> list[Path]:
    return [folder / name for folder in box.cgroup_dirs]


def procs_in(leaf: Path) -> set[int]:
    return {int(pid) for pid in (leaf / "cgroup.procs").read_text().split()}


async def test_the_standby_is_the_bots_child_in_a_leaf_of_its_own_holding_nothing(
    nats_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROSEY_TEST_TOKEN", "bot-env-secret-9c1d")  # in the bot's environment
    async with standby_box() as box:
        standby = await ready_standby(spawner_of(box))
        process = psutil.Process(standby.pid)
        assert process.ppid() == os.getpid()  # the bot's child, like a forked plugin
        assert standby.pid in reaper.claimed  # the orphan reaper leaves it alone
        assert os.listdir(f"/proc/{standby.pid}/task") == [str(standby.pid)]  # one thread
        environ, links, _ = what_it_holds(standby.pid)
        assert b"bot-env-secret" not in environ
        assert b"ROSEY_" not in environ
        assert not [link for link in links if "eventpoll" in link]  # no event loop
        assert len([link for link in links if link.startswith("socket:")]) == 1  # its own
        assert len(links) == 4  # stdin, stdout, stderr and that socket: nothing else
        for leaf in leaves(box, f"standby-{standby.pid}"):
            assert procs_in(leaf) == {standby.pid}  # placed ahead of time, everywhere
        pid = standby.pid
    assert await wait_gone([pid], timeout=5) == []  # removed on stop (and its leaf: above)


async def test_a_plugin_started_from_the_standby_is_it_and_is_confined_like_any(
    box: Sandbox, nats_url: str, tmp_path: Path
) -> None:
    spawner = spawner_of(box)
    standby = await ready_standby(spawner)
    process = await spawner.spawn(make_spec(tmp_path, nats_url, "crash_on_command"))
    try:
        assert process.pid == standby.pid  # not a new fork: the standby became the plugin
        assert process.how == "forked"
        await until_ready(process)
        reply = await command(nats_url, "crash_on_command", "alive")
        assert reply["text"] == f"alive (pid {process.pid})"
        assert os.getsid(process.pid) == process.pid
        assert "rlimit" in process.layers
        assert process.layers[: len(HOST.layers)] == HOST.layers
        tree = {process.pid} | {p.pid for p in psutil.Process(process.pid).children(True)}
        folders = []
        for folder in box.cgroup_dirs:
            # v1 renames the leaf to the plugin's; v2 has no rename: it keeps the standby's.
            v2 = (folder / "cgroup.controllers").exists()
            name = "standby" if v2 else "crash_on_command"
            assert (folder / f"standby-{process.pid}").exists() is v2
            folders.append(folder / f"{name}-{process.pid}")
            assert procs_in(folders[-1]) == tree  # its tree, and only its tree
        with contextlib.suppress(Exception):
            await command(nats_url, "crash_on_command", "crash")
        async with asyncio.timeout(10):
            assert await process.wait() == 3  # exit codes exact
        assert "crash_on_command: exiting with code 3" in "\n".join(process.stderr_tail.lines())
        assert process.log_bytes_written > 0  # its output reached its log
        process.close()
        assert box.leaves_removed(timeout=5)
        assert [folder for folder in folders if folder.exists()] == []
        # The pool is refilled in the background: a new process, in a new leaf.
        refill = await ready_standby(spawner, other_than=standby.pid)
        assert all(procs_in(leaf) == {refill.pid} for leaf in leaves(box, f"standby-{refill.pid}"))
    finally:
        await process.stop(1.0)


@needs("memory")
async def test_a_memory_hog_started_from_the_standby_is_killed_at_its_limit(
    box: Sandbox, nats_url: str, tmp_path: Path
) -> None:
    spawner = spawner_of(box)
    standby = await ready_standby(spawner)
    spec = make_spec(tmp_path, nats_url, "memory_hog", limits=ResourceLimits(memory_mb=64))
    process = await spawner.spawn(spec)
    try:
        assert process.pid == standby.pid
        async with asyncio.timeout(30):
            assert await process.wait() == -signal.SIGKILL  # the OOM killer
        reason = process.limit_reason()
        assert reason is not None
        assert reason.startswith("memory limit 64 MB hit"), reason
    finally:
        await process.stop(1.0)


@needs("pids")
async def test_a_fork_bomb_started_from_the_standby_is_bounded(
    box: Sandbox, nats_url: str, tmp_path: Path
) -> None:
    spawner = spawner_of(box)
    standby = await ready_standby(spawner)
    spec = make_spec(
        tmp_path, nats_url, "forkbomb", limits=ResourceLimits(max_processes=8), config={"forks": 50}
    )
    process = await spawner.spawn(spec)
    try:
        assert process.pid == standby.pid
        message = None
        async with asyncio.timeout(20):
            while message is None or message["type"] != "ready":
                message = await process.receive()
                assert message is not None, process.stderr_tail.lines()
        outcome = json.loads((spec.data_dir / "forkbomb.json").read_text())
        assert outcome["refused"] > 0
        assert outcome["started"] < 8  # the plugin itself is one of the 8 tasks
        assert process.limit_reason() == (
            f"process limit 8 hit: {outcome['refused']} forks refused"
        )
        tree = [process.pid, *outcome["pids"]]
    finally:
        await process.stop(1.0)
    assert await wait_gone(tree, timeout=5) == []


@pytest.mark.skipif(not HOST.usable, reason=f"no usable cgroup hierarchy: {HOST.notes}")
async def test_no_attach_priming_while_a_standby_is_ready(
    box: Sandbox, nats_url: str, tmp_path: Path
) -> None:
    """The primer would hold the kernel's cgroup mutex the standby's rename needs."""
    spawner = spawner_of(box)
    await ready_standby(spawner)
    assert box._group is not None
    procs = tmp_path / "cgroup.procs"
    procs.write_text("")
    box._group.primer = AttachPrimer(procs)
    spec = make_spec(tmp_path, nats_url, "sdk_probe")
    box.prepare(spec)  # a start the standby will take: nothing to prime
    assert not box._group.primer._busy.locked()
    assert procs.read_text() == ""
    spawner.stopping()  # no refill: the next start has no standby
    process = await spawner.spawn(spec)
    try:
        box.prepare(dataclasses.replace(spec, name="other"))  # a move follows: primed
        wait_done(box._group.primer)
        assert procs.read_text() == str(os.getpid())
    finally:
        await process.stop(1.0)


async def test_the_pool_is_refilled_once_the_plugin_that_took_it_is_confined(
    box: Sandbox, nats_url: str, tmp_path: Path
) -> None:
    """A refill's move holds the kernel's cgroup mutex, which the rename would wait for."""
    spawner = spawner_of(box)
    standby = await ready_standby(spawner)
    confine = spawner.confine
    assert confine is not None
    filling: list[bool] = []

    def watching(process: PluginProcess) -> Confinement | list[str]:
        filling.append(spawner.filling)
        return confine(process)

    spawner.confine = watching
    process = await spawner.spawn(make_spec(tmp_path, nats_url, "sdk_probe"))
    try:
        assert process.pid == standby.pid
        assert filling == [False]  # none being made while it was confined
        assert spawner.filling  # and one on its way right after
    finally:
        await process.stop(1.0)


async def test_no_standby_is_made_while_the_bot_stops(
    box: Sandbox, nats_url: str, tmp_path: Path
) -> None:
    spawner = spawner_of(box)
    standby = await ready_standby(spawner)
    spawner.stopping()  # what the manager's shutdown says first
    process = await spawner.spawn(make_spec(tmp_path, nats_url, "sdk_probe"))
    try:
        assert process.pid == standby.pid  # the ready one is still used
        assert not spawner.filling  # but none is made after it
        assert spawner.standby is None
    finally:
        await process.stop(1.0)


async def test_a_standby_that_dies_is_replaced_not_used(
    box: Sandbox, nats_url: str, tmp_path: Path
) -> None:
    spawner = spawner_of(box)
    first = await ready_standby(spawner)
    old_leaves = leaves(box, f"standby-{first.pid}")
    os.kill(first.pid, signal.SIGKILL)
    second = await ready_standby(spawner, other_than=first.pid)
    assert box.leaves_removed(timeout=5)
    assert [leaf for leaf in old_leaves if leaf.exists()] == []
    assert first.pid not in reaper.claimed
    process = await spawner.spawn(make_spec(tmp_path, nats_url, "sdk_probe"))
    try:
        assert process.pid == second.pid
        await until_ready(process)
    finally:
        await process.stop(1.0)


async def test_the_standby_goes_with_a_replaced_fork_server_and_comes_back(
    box: Sandbox, nats_url: str, tmp_path: Path
) -> None:
    spawner = spawner_of(box)
    first = await ready_standby(spawner)
    assert spawner.server is not None
    old_server = spawner.server.pid
    old_leaves = leaves(box, f"standby-{first.pid}")
    os.kill(old_server, signal.SIGKILL)
    assert await wait_gone([first.pid], timeout=5) == []  # discarded with its server
    assert box.leaves_removed(timeout=5)
    assert [leaf for leaf in old_leaves if leaf.exists()] == []
    await ready_standby(spawner, other_than=first.pid)  # the new server's
    assert spawner.server is not None
    assert spawner.server.pid != old_server


def _standby_script() -> str:
    """A stand-in bot forking one standby (``forkserver.standby``) whose parent is ``argv[1]``
    (0: itself); a second child holds the bot's end of the socket open, so that the standby
    can only end by its death signal (or its own checks), not by end of file."""
    return (
        "import os, socket, sys, time\n"
        "from rosey.sandbox import forkserver\n"
        "forkserver.ADOPTION_TIMEOUT = 0.2\n"
        "ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)\n"
        "holder = os.fork()\n"
        "if holder == 0:\n"
        "    theirs.close()\n"
        "    os.close(0)\n"
        "    os.close(1)\n"
        "    time.sleep(60)\n"
        "    os._exit(0)\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    ours.close()\n"
        "    null = os.open(os.devnull, os.O_RDWR)\n"
        "    os.dup2(null, 0)\n"
        "    os.dup2(null, 1)\n"
        "    parent = int(sys.argv[1]) or os.getppid()\n"
        "    forkserver.standby(theirs, lambda fd, parent: 0, parent)\n"
        "theirs.close()\n"
        "ours.settimeout(10)\n"
        "said = ours.recv(64).decode() or '-'\n"
        "code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) if said == '-' else 0\n"
        "print(pid, holder, said, code, flush=True)\n"
        "sys.stdin.read()\n"
    )


async def test_a_standby_dies_with_its_parent_and_one_never_adopted_leaves() -> None:
    """Its death signal is armed once the bot is its parent, and checked against the race."""
    for parent, expected in (("0", "ready"), ("1", "-")):
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _standby_script(),
            parent,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        holder = 0
        try:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), 20)
            pid_text, holder_text, said, code = line.decode().split()
            holder = int(holder_text)
            assert said == expected, line
            if expected == "-":  # its parent never became the "bot": it left without serving
                assert int(code) == ORPHANED
                continue
            proc.kill()  # the bot dies: the standby must follow (its death signal)
            await proc.wait()
            assert await wait_gone([int(pid_text)], timeout=5) == []
        finally:
            if holder:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(holder, signal.SIGKILL)
            if proc.returncode is None:
                proc.kill()
            await proc.wait()


def standby_of(bot: BotProcess, plugins: set[int]) -> list[int]:
    """The bot's standby: its child running the fork server's command line that is neither a
    plugin nor the fork server (which leads its own process group; the standby is in it) nor
    the init of a plugin's namespaces (in that group too, but pid 1 inside)."""
    found = []
    for child in psutil.Process(bot.pid).children():
        with contextlib.suppress(psutil.Error, OSError):  # a zombie, gone
            if (
                "rosey.sandbox.forkserver" in " ".join(child.cmdline())
                and child.pid not in plugins
                and os.getpgid(child.pid) != child.pid
                and inner_pid(child.pid) != 1
            ):
                found.append(child.pid)
    return found


async def became_wait(init: int) -> bool:
    """Wait until ``init`` has exec'd its wait (its set-up takes a moment after the fork)."""

    async def exec_done() -> bool:
        return psutil.Process(init).cmdline()[-1:] == ["infinity"]

    await eventually(exec_done, timeout=10, what="init becomes sleep infinity")
    return True


def init_of(plugin: int) -> int:
    """The init of ``plugin``'s PID namespace: our child, pid 1 in the same namespace."""
    namespace = os.readlink(f"/proc/{plugin}/ns/pid")
    found = [
        child.pid
        for child in psutil.Process().children()
        if child.pid != plugin
        and inner_pid(child.pid) == 1
        and os.readlink(f"/proc/{child.pid}/ns/pid") == namespace
    ]
    assert len(found) == 1, found
    return found[0]


def inner_pid(pid: int) -> int:
    """The process's pid in its own (innermost) PID namespace."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("NSpid:"):
            return int(line.split()[-1])
    raise AssertionError(f"no NSpid for {pid}")


async def test_a_restarted_plugin_is_the_standby_and_a_sigkilled_bot_leaves_nothing(
    tmp_path: Path, bot_privilege: str
) -> None:
    unprivileged = bot_privilege == "unprivileged"
    config = "backoff: {initial_s: 0, factor: 1, max_s: 0, jitter: 0}\n"
    async with run_bot(
        tmp_path, plugins_dirs=[DICE], config=config, unprivileged=unprivileged
    ) as bot:
        before = (await bot.manage("status", {"plugin": "dice"}))["result"]["stats"]["pid"]
        found: list[int] = []

        async def one_standby() -> bool:
            found[:] = standby_of(bot, {before})
            return len(found) == 1

        await eventually(one_standby, timeout=10, what="the bot's standby is ready")
        standby = found[0]
        os.kill(before, signal.SIGKILL)

        async def restarted() -> bool:
            status = (await bot.manage("status", {"plugin": "dice"}))["result"]
            return status["state"] == "running" and status["stats"]["pid"] not in (None, before)

        await eventually(restarted, timeout=20, what="dice is restarted")
        status = (await bot.manage("status", {"plugin": "dice"}))["result"]
        assert status["stats"]["pid"] == standby  # restarted from the standby
        assert await bot.chat("!roll 1d1", user="ann") == "ann rolled 1d1: 🎲 1"
        await eventually(one_standby, timeout=10, what="the pool is refilled")
        tree = set(bot.descendants())
        assert found[0] in tree
        bot.proc.kill()
        await bot.proc.wait()
        assert await wait_gone(tree, timeout=10) == []


async def test_a_standby_is_made_in_the_namespaces_launches_ask_for(
    box: Sandbox, nats_url: str, tmp_path: Path
) -> None:
    """A standby made in other namespaces is discarded (the launch forks), and the refill is
    made in those the launch asked for: the next launch then becomes it, pid 2 inside already."""
    spawner = spawner_of(box)
    first = await ready_standby(spawner)
    assert first.made is None  # this box was told none
    isolation = {"pid_namespace": True, "ipc_namespace": True, "plugin_uids": False}
    spec = make_spec(tmp_path, nats_url, "crash_on_command")
    spec = dataclasses.replace(spec, bootstrap={**spec.bootstrap, "isolation": isolation})
    process = await spawner.spawn(spec)
    try:
        assert process.pid != first.pid  # not taken: forked into its namespaces instead
        assert await wait_gone([first.pid], timeout=5) == []
        await until_ready(process)
        assert inner_pid(process.pid) == 2  # no waiter: the bot's child is the plugin
        reply = await command(nats_url, "crash_on_command", "alive")
        assert reply["text"] == "alive (pid 2)"  # its own pid, inside
        init = init_of(process.pid)
        assert init in reaper.claimed  # the bot's child too, reaped by the bot when it ends
        # It has become "sleep infinity": none of the fork server's memory is its own.
        assert psutil.Process(init).cmdline()[-1:] == ["infinity"] or await became_wait(init)
    finally:
        await process.stop(5.0)
    assert await wait_gone([init], timeout=5) == []  # it ended with its plugin

    async def reaped() -> bool:
        return init not in reaper.claimed and not psutil.pid_exists(init)  # zombies exist

    await eventually(reaped, timeout=5, what="its init is reaped by the bot")
    refill = await ready_standby(spawner, other_than=first.pid)
    assert refill.made == {"pid": True, "ipc": True}
    assert inner_pid(refill.pid) == 2  # made ahead: init is pid 1 beside it
    again = await spawner.spawn(spec)
    try:
        assert again.pid == refill.pid
        await until_ready(again)
        assert inner_pid(again.pid) == 2
        reply = await command(nats_url, "crash_on_command", "alive")
        assert reply["text"] == "alive (pid 2)"
    finally:
        await again.stop(5.0)
