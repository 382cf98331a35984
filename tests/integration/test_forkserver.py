"""The fork server (``rosey.sandbox.forkserver``, ``rosey.sandbox.forkspawner``) with real
plugin processes, a real nats-server and the real ``rosey run``.

A forked plugin is ready and answers, is the bot's own child, and its exit codes and signals
read exactly as a plainly spawned one's. The fork server holds no secret, thread, loop or
connection; killed, it leaves running plugins alone, the next plugin is spawned plainly and the
server comes back. A SIGKILLed bot leaves no plugin, grandchild or fork server. The isolation
tests (test_isolation_*.py, test_security_*.py, test_orphans.py) run through it by default; here
a hostile plugin also tries to reach the fork server itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import psutil
import pytest
from test_isolation_reach import DICE, REACH, all_healthy, targets, untouched
from test_sandbox import make_spec

from botproc import FIXTURE_PLUGINS, BotProcess, run_bot
from helpers import chat_command, eventually, wait_gone
from rosey.bus.client import EventBus
from rosey.protocol import subjects
from rosey.sandbox.confine import Sandbox
from rosey.sandbox.forkspawner import ForkSpawner
from rosey.sandbox.host import detect_host
from rosey.sandbox.orphans import GRACE, zombie_children
from rosey.sandbox.process import PlainSpawner, PluginProcess

FORKER = FIXTURE_PLUGINS / "forker"


@contextlib.asynccontextmanager
async def forking_sandbox() -> AsyncIterator[Sandbox]:
    """A sandbox on this host's cgroups with its fork server started."""
    sandbox = Sandbox(detect_host(), family=f"test{uuid.uuid4().hex[:10]}")
    sandbox.open()
    try:
        await sandbox.start_fork_server()
        yield sandbox
    finally:
        sandbox.close()


@pytest.fixture
async def box() -> AsyncIterator[Sandbox]:
    async with forking_sandbox() as sandbox:
        yield sandbox


def fork_spawner(sandbox: Sandbox) -> ForkSpawner:
    spawner = sandbox.spawner()
    assert isinstance(spawner, ForkSpawner)
    assert spawner.server is not None
    return spawner


async def until_ready(process: PluginProcess) -> None:
    async with asyncio.timeout(20):
        while True:
            message = await process.receive()
            assert message is not None, process.stderr_tail.lines()
            if message["type"] == "ready":
                return
            assert message["type"] == "confined", (message, process.stderr_tail.lines())


async def command(nats_url: str, plugin: str, name: str) -> Any:
    async with EventBus(nats_url, name="forkserver-test") as bus:
        reply = await bus.request(subjects.command_execute(plugin), chat_command(name), timeout=5)
    return reply.json()


def socket_inodes(pid: int) -> set[str]:
    found = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        link = os.readlink(f"/proc/{pid}/fd/{fd}")
        if link.startswith("socket:"):
            found.add(link)
    return found


async def test_a_forked_plugin_is_ready_answers_and_is_the_bots_own_child(
    box: Sandbox, nats_url: str, tmp_path: Path
) -> None:
    spawner = fork_spawner(box)
    assert spawner.server is not None
    server_sockets = socket_inodes(spawner.server.pid)
    process = await spawner.spawn(make_spec(tmp_path, nats_url, "crash_on_command"))
    try:
        assert process.how == "forked"
        await until_ready(process)
        reply = await command(nats_url, "crash_on_command", "alive")
        assert reply["text"] == f"alive (pid {process.pid})"
        plugin = psutil.Process(process.pid)
        assert plugin.ppid() == os.getpid()  # adopted: the bot waits for it itself
        assert os.getsid(process.pid) == process.pid  # a session of its own
        assert plugin.cwd() == str(tmp_path / "data" / "crash_on_command")
        assert server_sockets.isdisjoint(socket_inodes(process.pid))  # not the server's socket
        assert "rlimit" in process.layers  # confined before its bootstrap, as spawned ones
    finally:
        await process.stop(1.0)
    assert await wait_gone([process.pid], timeout=5) == []


async def _sigusr1(process: PluginProcess, nats_url: str) -> None:
    os.kill(process.pid, signal.SIGUSR1)


async def _crash(process: PluginProcess, nats_url: str) -> None:
    with contextlib.suppress(Exception):  # no reply: it is gone
        await command(nats_url, "crash_on_command", "crash")


async def _nothing(process: PluginProcess, nats_url: str) -> None:
    return None


Ending = Callable[[PluginProcess, str], Any]


@pytest.mark.parametrize("how", ["spawned", "forked"])
@pytest.mark.parametrize(
    ("plugin", "config", "ready", "end", "code"),
    [
        ("crash_on_start", {"mode": "exit"}, False, _nothing, 1),
        ("crash_on_start", None, False, _nothing, 1),
        ("crash_on_command", None, True, _crash, 3),
        ("exits_later", {"after_s": 0.2}, True, _nothing, 0),
        ("crash_on_command", None, True, _sigusr1, -signal.SIGUSR1),
    ],
)
async def test_exit_codes_and_signals_read_the_same_forked_or_spawned(
    box: Sandbox,
    nats_url: str,
    tmp_path: Path,
    how: str,
    plugin: str,
    config: dict[str, Any] | None,
    ready: bool,
    end: Ending,
    code: int,
) -> None:
    spawner = fork_spawner(box) if how == "forked" else PlainSpawner(confine=box.confine)
    process = await spawner.spawn(make_spec(tmp_path, nats_url, plugin, config=config))
    try:
        assert process.how == how
        if ready:
            await until_ready(process)
        await end(process, nats_url)
        async with asyncio.timeout(20):
            assert await process.wait() == code, process.stderr_tail.lines()
        assert process.returncode == code
    finally:
        await process.stop(0.5)


async def test_a_stopped_sigterm_ignorer_reads_signal_9_forked(
    box: Sandbox, nats_url: str, tmp_path: Path
) -> None:
    process = await fork_spawner(box).spawn(make_spec(tmp_path, nats_url, "ignores_sigterm"))
    await until_ready(process)
    assert await process.stop(1.0) == -signal.SIGKILL
    assert "ignores_sigterm: refusing to stop" in process.stderr_tail.lines()


async def test_the_fork_server_killed_leaves_plugins_running_spawns_plainly_and_comes_back(
    box: Sandbox, nats_url: str, tmp_path: Path
) -> None:
    spawner = fork_spawner(box)
    first = await spawner.spawn(make_spec(tmp_path, nats_url, "crash_on_command"))
    second: PluginProcess | None = None
    third: PluginProcess | None = None
    try:
        await until_ready(first)
        assert spawner.server is not None
        old = spawner.server.pid
        spawner.restart_delay = 3.0  # long enough to spawn once while it is away
        os.kill(old, signal.SIGKILL)

        async def lost() -> bool:
            return spawner.server is None

        await eventually(lost, timeout=5, what="the fork server's death is noticed")
        second = await spawner.spawn(make_spec(tmp_path, nats_url, "exits_later"))
        assert second.how == "spawned"
        await until_ready(second)
        # The running plugin did not notice.
        assert first.returncode is None
        reply = await command(nats_url, "crash_on_command", "alive")
        assert reply["text"] == f"alive (pid {first.pid})"

        async def back() -> bool:
            return spawner.server is not None

        await eventually(back, timeout=20, what="the fork server is restarted")
        assert spawner.server is not None
        assert spawner.server.pid != old
        assert await wait_gone([old], timeout=5) == []
        third = await spawner.spawn(make_spec(tmp_path, nats_url, "sdk_probe"))
        assert third.how == "forked"
        await until_ready(third)
    finally:
        for process in (first, second, third):
            if process is not None:
                await process.stop(1.0)


def what_it_holds(pid: int) -> tuple[bytes, list[str], set[str]]:
    """Its start environment, what its descriptors are, and the inodes of unix sockets."""
    environ = Path(f"/proc/{pid}/environ").read_bytes()
    links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
    unix = {line.split()[6] for line in Path("/proc/net/unix").read_text().splitlines()[1:]}
    return environ, links, unix


def _memory_holds(pid: int, needle: bytes) -> bool:
    """Whether ``needle`` is anywhere in the writable memory of ``pid`` (root only)."""
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in maps:
            span, perms = line.split()[:2]
            if "r" not in perms or "w" not in perms:
                continue
            start, end = (int(x, 16) for x in span.split("-"))
            try:
                mem.seek(start)
                if needle in mem.read(end - start):
                    return True
            except OSError:
                continue
    return False


async def test_the_fork_server_holds_no_secret_thread_loop_or_connection(
    nats_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROSEY_TEST_TOKEN", "bot-env-secret-7f3a")  # in the bot's environment
    async with forking_sandbox() as box:
        spawner = fork_spawner(box)
        assert spawner.server is not None
        server = spawner.server.pid
        password = f"pw-{uuid.uuid4().hex}"
        spec = make_spec(tmp_path, nats_url, "crash_on_command")
        spec = dataclasses.replace(spec, bootstrap={**spec.bootstrap, "password": password})
        process = await spawner.spawn(spec)
        try:
            await until_ready(process)
            assert os.listdir(f"/proc/{server}/task") == [str(server)]  # one thread
            environ, links, unix = what_it_holds(server)
            assert b"bot-env-secret" not in environ
            assert b"ROSEY_" not in environ
            assert not [link for link in links if "eventpoll" in link]  # no event loop
            sockets = {link[8:-1] for link in links if link.startswith("socket:")}
            assert len(sockets) == 1  # its end of the bot's socket pair, nothing else
            assert sockets <= unix
            if os.geteuid() == 0:
                assert _memory_holds(process.pid, password.encode())  # the probe can see one
                assert not _memory_holds(server, password.encode())
        finally:
            await process.stop(1.0)


async def test_orphans_adopted_by_the_bot_are_reaped(
    box: Sandbox, nats_url: str, tmp_path: Path
) -> None:
    """The bot is the child subreaper: what a plugin leaves behind comes to it when killed,
    and must not stay a zombie (``rosey.sandbox.orphans``)."""
    process = await fork_spawner(box).spawn(make_spec(tmp_path, nats_url, "forker"))
    await until_ready(process)
    pids = read_json(tmp_path / "data" / "forker" / "forker-pids.json")
    await process.stop(1.0)
    assert await wait_gone(pids.values(), timeout=5) == []

    async def reaped() -> bool:
        return not set(zombie_children(os.getpid())) & set(pids.values())

    await eventually(reaped, timeout=GRACE + 5, what="the forker's orphans are reaped")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


async def fork_server_of(bot: BotProcess) -> int:
    """The fork server's pid: the bot's child running ``rosey.sandbox.forkserver`` that is not
    a plugin (forked plugins show the server's command line too) nor the standby (in the
    server's process group, which the server leads), nor a namespace's init (in that group too;
    one whose plugin ended is a zombie until the bot reaps it)."""
    listing = (await bot.manage("list"))["result"]["plugins"]
    plugins = {p["stats"]["pid"] for p in listing}
    found = [
        p.pid
        for p in psutil.Process(bot.pid).children()
        if "rosey.sandbox.forkserver" in command_line(p)
        and p.pid not in plugins
        and os.getpgid(p.pid) == p.pid
    ]
    assert len(found) == 1, found
    return found[0]


def command_line(process: psutil.Process) -> str:
    """Its command line; empty for one that has ended (a zombie has none)."""
    try:
        return " ".join(process.cmdline())
    except (psutil.ZombieProcess, psutil.NoSuchProcess):
        return ""


def forked(bot: BotProcess, plugin: str) -> bool:
    return any(f"{plugin} (pid " in line and "): forked" in line for line in bot.log)


async def test_a_sigkilled_bot_leaves_no_plugin_grandchild_or_fork_server(
    tmp_path: Path, bot_privilege: str
) -> None:
    unprivileged = bot_privilege == "unprivileged"
    async with run_bot(tmp_path, plugins_dirs=[DICE, FORKER], unprivileged=unprivileged) as bot:
        assert await bot.chat("!roll 1d1", user="ann") == "ann rolled 1d1: 🎲 1"
        assert forked(bot, "dice")
        assert forked(bot, "forker")
        server = await fork_server_of(bot)
        forker = json.loads(await bot.chat("!pids"))
        tree = set(bot.descendants()) | set(forker.values())
        assert server in tree
        bot.proc.kill()
        await bot.proc.wait()
        assert await wait_gone(tree, timeout=10) == []


async def test_a_hostile_forked_plugin_cannot_reach_the_fork_server_or_anything_else(
    tmp_path: Path, bot_privilege: str
) -> None:
    """``reach`` (test_isolation_reach.py) run forked, with the fork server among its targets;
    the test fails if the forked plugin skipped a confinement layer or was not forked."""
    unprivileged = bot_privilege == "unprivileged"
    async with run_bot(tmp_path, plugins_dirs=[DICE, REACH], unprivileged=unprivileged) as bot:
        assert forked(bot, "reach")
        server = await fork_server_of(bot)
        pids = {**await targets(bot), "fork server": [server]}
        flat = [pid for group in pids.values() for pid in group]
        assert await bot.chat("!reach " + " ".join(map(str, flat)), timeout=30) == (
            f"done {10 * len(flat)}"
        )
        report = read_json(bot.state_dir / "data" / "reach" / "reach.json")
        assert {what: how for what, how in report["outcomes"].items() if how == "allowed"} == {}
        assert report["visible"] == [1, 2]
        status = (await bot.manage("status", {"plugin": "reach"}))["result"]
        layers = set(status["layers"])
        assert {"pidns", "ipcns", "seccomp", "rlimit", "no-capabilities"} <= layers, layers
        assert [layer for layer in layers if layer.startswith("landlock-abi")], layers
        assert ("uid" in layers or "missing:uid" in layers) is not unprivileged
        await all_healthy(bot, pids, pids["dice"][0])
        untouched(server)


async def test_the_fork_server_can_be_switched_off(tmp_path: Path) -> None:
    config = "runtime: {fork_server: false}\n"
    async with run_bot(tmp_path, plugins_dirs=[DICE], config=config) as bot:
        assert await bot.chat("!roll 1d1", user="ann") == "ann rolled 1d1: 🎲 1"
        assert not forked(bot, "dice")
        assert any("dice (pid " in line and "): spawned" in line for line in bot.log)
        status = (await bot.manage("status", {"plugin": "dice"}))["result"]
        assert status["started"] == "spawned"
        children = psutil.Process(bot.pid).children()
        assert not [p for p in children if "rosey.sandbox.forkserver" in " ".join(p.cmdline())]


async def test_a_bot_restarts_its_fork_server_and_a_sigkill_still_leaves_nothing(
    tmp_path: Path,
) -> None:
    """The fork server killed under a running bot: dice keeps answering, the server comes back
    (the warden is told the new one), the next start is forked again, and a SIGKILL of the bot
    leaves nothing behind."""
    async with run_bot(tmp_path, plugins_dirs=[DICE]) as bot:
        first = await fork_server_of(bot)
        before = (await bot.manage("status", {"plugin": "dice"}))["result"]
        assert before["started"] == "forked"
        dice = before["stats"]["pid"]
        os.kill(first, signal.SIGKILL)
        await bot.wait_for_log(f"fork server (pid {first}) lost", timeout=10)
        assert await bot.chat("!roll 1d1", user="ann") == "ann rolled 1d1: 🎲 1"
        status = (await bot.manage("status", {"plugin": "dice"}))["result"]
        assert status["stats"]["pid"] == dice

        async def back() -> bool:
            return sum("fork server ready" in line for line in bot.log) >= 2

        await eventually(back, timeout=20, what="the bot restarts its fork server")
        second = await fork_server_of(bot)
        assert second != first
        restarted = (await bot.manage("restart", {"plugin": "dice"}))["result"]
        assert restarted["state"] == "running"
        assert any(f"dice (pid {restarted['stats']['pid']}): forked" in line for line in bot.log), (
            bot.log[-20:]
        )
        tree = set(bot.descendants())
        assert second in tree
        bot.proc.kill()
        await bot.proc.wait()
        assert await wait_gone(tree, timeout=10) == []
