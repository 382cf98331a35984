"""The three supervisors of bench/supervisors.py, each driven through its own process and API.

A driver writes the system's config for N children, launches the system as the operator would,
learns when each child is up *in the system's own terms* (from the system's own record, so
observing does not change what is observed), lists the children's pids through the API, and
stops or kills the system. What is measured, and how, is in bench/supervisors.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
import xmlrpc.client
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import psutil
from nats.aio.client import Client
from nats.aio.msg import Msg

#: The trivial child of supervisord and circus (and the floor): Python, nats connected, says so.
CHILD_SCRIPT = """\
import asyncio, json, os, sys, time
sys.modules["aiohttp"] = None  # as the plugin runner does: nats-py need not import it
import nats
del sys.modules["aiohttp"]
async def main():
    nc = await nats.connect(sys.argv[2], connect_timeout=5)
    body = json.dumps({"pid": os.getpid(), "t": time.time()}).encode()
    await nc.publish("bench.up." + sys.argv[1], body)
    await nc.flush()
    await asyncio.Event().wait()
asyncio.run(main())
"""
#: Rosey's trivial plugin: says the same once connected, then readiness follows.
PLUGIN_MANIFEST = (
    "name: {name}\nversion: 1.0.0\nentrypoint: trivial:Trivial\nrestart_policy: always\n"
)
PLUGIN_MODULE = """\
import os, time
from rosey.sdk import Plugin, runtime

class Trivial(Plugin):
    async def on_start(self):
        # In its own PID namespace a plugin's getpid() is 2: announce the pid the manager knows
        # it by (its waiter outside the namespace), which is what status shows and what dies.
        pid = runtime.MANAGER_PID or os.getpid()
        await self.publish("up", {"pid": pid, "t": time.time()})
"""
BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Profile:
    """Settings of every system that decide how fast it restarts (see docs/BENCHMARKS.md)."""

    name: str
    rosey_backoff_initial_s: float  # first restart delay (default 0.5 s)
    rosey_backoff_jitter: float  # ± share of the delay (default 0.2)
    supervisord_startsecs: int  # seconds up before RUNNING (default 1)
    supervisord_group: bool  # all programs in one [group:] (stopped together, not one by one)
    circus_check_delay: float  # seconds between its reap/respawn passes (ini default 5)
    #: Kills wait a random 0..this many seconds, so they do not fall in step with a periodic timer
    #: (circus's check_delay); at least the longest period of the profile.
    kill_pause_s: float


PROFILES = {
    "fast": Profile("fast", 0.0, 0.0, 0, True, 0.1, 0.2),
    "default": Profile("default", 0.5, 0.2, 1, False, 5.0, 5.0),
}


def alive(pid: int) -> bool:
    """Runs (a zombie has finished running)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def in_exit(pid: int) -> bool:
    """Not a zombie yet, but its memory already released: a task in the kernel's exit path
    (e.g. the init of a PID namespace waiting, in ``zap_pid_ns_processes``, until a process
    of its namespace whose parent is outside is reaped). It runs nothing and holds nothing."""
    try:
        with open(f"/proc/{pid}/status") as status:
            text = status.read()
    except OSError:
        return False
    return "VmSize:" not in text and "State:\tZ" not in text


async def poll(check: Callable[[], bool], timeout: float, interval: float = 0.01) -> None:
    """Wait until ``check()`` holds: for state another process owns, with nothing to await."""
    async with asyncio.timeout(timeout):
        while not check():  # noqa: ASYNC110
            await asyncio.sleep(interval)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Board:
    """The latest ``(pid, wall time)`` per child name from some stream of events."""

    def __init__(self) -> None:
        self._latest: dict[str, tuple[int | None, float]] = {}
        self._changed = asyncio.Event()

    def put(self, name: str, pid: int | None, at: float) -> None:
        self._latest[name] = (pid, at)
        self._changed.set()

    def since(self, name: str, t: float) -> bool:
        entry = self._latest.get(name)
        return entry is not None and entry[1] >= t

    def at(self, name: str) -> float:
        return self._latest[name][1]

    def pid(self, name: str) -> int | None:
        entry = self._latest.get(name)
        return None if entry is None else entry[0]

    async def wait(self, check: Callable[[], bool], timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while not check():
                self._changed.clear()
                await self._changed.wait()


class System:
    """One supervisor process with N children ``child0..``; one launch at a time."""

    label = ""

    def __init__(self, root: Path, n: int, url: str, profile: Profile, nc: Client) -> None:
        self.root, self.url, self.profile, self.nc = root, url, profile, nc
        self.names = [f"child{i}" for i in range(n)]
        self.script = root / "child.py"
        self.script.write_text(CHILD_SCRIPT)
        self.up = Board()
        self.proc: asyncio.subprocess.Process | None = None
        self.launches = 0
        #: Wall time the system spawned its first child in this launch (its own record).
        self.first_spawn: float | None = None
        self._out: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def argv(self, k: int) -> list[str]:
        """Write the config of launch ``k``; the command line."""
        raise NotImplementedError

    async def launch(self) -> float:
        """Start the supervisor; the wall time just before."""
        self.launches += 1
        self.first_spawn = None
        argv = self.argv(self.launches)
        env = {k: v for k, v in os.environ.items() if not k.startswith("ROSEY_")}
        self._out = self._output(self.root / f"{self.label}-{self.launches}.out")
        started = time.time()
        self.proc = await asyncio.create_subprocess_exec(
            *argv, cwd=self.root, env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=self._out, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        return started

    def spawned(self, at: float) -> None:
        self.first_spawn = at if self.first_spawn is None else min(self.first_spawn, at)

    @staticmethod
    def _output(path: Path) -> IO[bytes]:
        return path.open("wb")

    async def observe(self, pids: dict[str, int]) -> None:
        """Record in ``up`` when these children (announced with these pids) came up."""

    async def api_ready(self) -> None:
        async with asyncio.timeout(60):
            while True:
                with contextlib.suppress(Exception):
                    await self.pids()
                    return
                await asyncio.sleep(0.02)

    async def pids(self) -> dict[str, int]:
        """Every child's pid, from the system's API."""
        raise NotImplementedError

    def terminate(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)

    async def wait_exit(self, timeout: float) -> None:
        assert self.proc is not None
        async with asyncio.timeout(timeout):
            await self.proc.wait()

    async def kill(self) -> None:
        """SIGKILL the supervisor (only it) if it still runs, and reap it."""
        if self.proc is not None:
            if self.proc.returncode is None:
                self.proc.kill()
            await self.proc.wait()
        if self._out is not None:
            self._out.close()
            self._out = None

    async def kill_all(self) -> None:
        """SIGKILL the supervisor and then every descendant it had (cleanup after a failure)."""
        family: list[psutil.Process] = []
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(psutil.NoSuchProcess):
                family = psutil.Process(self.proc.pid).children(recursive=True)
        await self.kill()
        for p in family:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()  # psutil refuses if the pid now belongs to another process
        await poll(lambda: not any(alive(p.pid) for p in family), 30)

    async def close(self) -> None:
        await self.kill_all()


class Rosey(System):
    """``rosey run --no-console`` on the bench's nats-server; up = the ``running`` event.

    Plugins are forked from the preloaded fork server (``runtime.fork_server``, the default);
    ``RoseySpawn`` is the same bot spawning every plugin as a new interpreter.
    """

    label = "rosey"
    fork_server = True

    def __init__(self, root: Path, n: int, url: str, profile: Profile, nc: Client) -> None:
        super().__init__(root, n, url, profile, nc)
        for name in self.names:
            folder = root / "plugins" / name
            folder.mkdir(parents=True)
            (folder / "plugin.yaml").write_text(PLUGIN_MANIFEST.format(name=name))
            (folder / "trivial.py").write_text(PLUGIN_MODULE)
        self._subscription: Any = None
        self._state = root

    def argv(self, k: int) -> list[str]:
        self._state = self.root / f"state-{k}"
        config = {
            "plugins_dir": [str(self.root / "plugins")],
            "state_dir": str(self._state),
            "nats": {"url": self.url},
            "runtime": {"fork_server": self.fork_server},
            "max_crash_count": 1_000_000,  # the kills are on purpose: never disable
            "backoff": {
                "initial_s": self.profile.rosey_backoff_initial_s,
                "jitter": self.profile.rosey_backoff_jitter,
            },
        }
        path = self.root / f"config-{k}.yaml"
        path.write_text(json.dumps(config))  # JSON is YAML
        return [sys.executable, "-m", "rosey.cli", "run", "--no-console", "--config", str(path)]

    async def launch(self) -> float:
        if self._subscription is None:

            async def on_event(msg: Msg) -> None:
                body = json.loads(msg.data)
                if body.get("state") == "starting":
                    self.spawned(float(body["timestamp"]))
                elif body.get("state") == "running":
                    self.up.put(body["plugin"], None, float(body["timestamp"]))

            self._subscription = await self.nc.subscribe("rosey.manager.events.*", cb=on_event)
            await self.nc.flush()
        return await super().launch()

    async def api_ready(self) -> None:
        runtime = self._state / "runtime.json"
        await poll(runtime.exists, 60, 0.02)  # written once the bot is up
        await super().api_ready()

    async def pids(self) -> dict[str, int]:
        reply = await self.nc.request("rosey.manager.list", b"", timeout=10)
        body = json.loads(reply.data)
        return {p["name"]: p["stats"]["pid"] for p in body["result"]["plugins"]}

    async def close(self) -> None:
        await super().close()
        if self._subscription is not None:
            await self._subscription.unsubscribe()


class RoseySpawn(Rosey):
    """Rosey with ``runtime.fork_server: false``: every plugin is a new interpreter."""

    label = "rosey-spawn"
    fork_server = False


class Supervisord(System):
    """``supervisord -n`` with an XML-RPC server; up = ``entered RUNNING state`` in its log."""

    label = "supervisord"

    def __init__(self, root: Path, n: int, url: str, profile: Profile, nc: Client) -> None:
        super().__init__(root, n, url, profile, nc)
        self.port = 0
        self._tail: asyncio.Task[None] | None = None

    def argv(self, k: int) -> list[str]:
        self.port = free_port()
        logs = self.root / f"logs-{k}"
        logs.mkdir()
        lines = [
            "[supervisord]",
            "nodaemon=true",
            f"logfile={self.root / f'supervisord-{k}.log'}",
            f"pidfile={self.root / f'supervisord-{k}.pid'}",
            f"childlogdir={logs}",
            "user=root" if os.geteuid() == 0 else "",
            "[inet_http_server]",
            f"port=127.0.0.1:{self.port}",
            "[rpcinterface:supervisor]",
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        ]
        for name in self.names:
            lines += [
                f"[program:{name}]",
                f"command={sys.executable} -I {self.script} {name} {self.url}",
                "autorestart=true",
                f"startsecs={self.profile.supervisord_startsecs}",
            ]
        if self.profile.supervisord_group:
            lines += ["[group:children]", f"programs={','.join(self.names)}"]
        path = self.root / f"supervisord-{k}.conf"
        path.write_text("\n".join(lines) + "\n")
        return [str(BIN / "supervisord"), "-n", "-c", str(path)]

    async def launch(self) -> float:
        started = await super().launch()
        self._tail = asyncio.create_task(
            self._follow(self.root / f"supervisord-{self.launches}.log")
        )
        return started

    async def _follow(self, log: Path) -> None:
        """Read the log as it grows: ``spawned: 'NAME' with pid P`` then ``success: NAME``."""
        await poll(log.exists, 60)
        spawned: dict[str, int] = {}
        with log.open() as fh:
            buffer = ""
            while True:
                chunk = fh.read()
                if not chunk:
                    await asyncio.sleep(0.01)
                    continue
                buffer += chunk
                *lines, buffer = buffer.split("\n")
                for line in lines:
                    words = line.split()
                    if len(words) < 5:
                        continue
                    stamp = time.mktime(
                        time.strptime(f"{words[0]} {words[1][:8]}", "%Y-%m-%d %H:%M:%S")
                    )
                    at = stamp + int(words[1][9:12]) / 1000
                    if words[3] == "spawned:":
                        spawned[words[4].strip("'")] = int(words[-1])
                        self.spawned(at)
                    elif words[3] == "success:" and "RUNNING" in line:
                        self.up.put(words[4], spawned.get(words[4]), at)

    def _rpc(self) -> Any:
        return xmlrpc.client.ServerProxy(f"http://127.0.0.1:{self.port}/RPC2").supervisor

    async def pids(self) -> dict[str, int]:
        infos = await asyncio.to_thread(lambda: self._rpc().getAllProcessInfo())
        return {i["name"]: i["pid"] for i in infos if i["statename"] == "RUNNING"}

    async def kill(self) -> None:
        await super().kill()
        if self._tail is not None:
            self._tail.cancel()
            await asyncio.gather(self._tail, return_exceptions=True)
            self._tail = None


class Circus(System):
    """``circusd`` with one watcher per child; up = the ``started`` time of its active process."""

    label = "circus"

    def __init__(self, root: Path, n: int, url: str, profile: Profile, nc: Client) -> None:
        super().__init__(root, n, url, profile, nc)
        self.endpoint = ""

    def argv(self, k: int) -> list[str]:
        self.endpoint = f"tcp://127.0.0.1:{free_port()}"
        lines = [
            "[circus]",
            f"endpoint = {self.endpoint}",
            f"pubsub_endpoint = tcp://127.0.0.1:{free_port()}",
            "multicast_endpoint =",  # no cluster discovery socket on 0.0.0.0
            f"check_delay = {self.profile.circus_check_delay}",
            "warmup_delay = 0",
        ]
        for name in self.names:
            lines += [
                f"[watcher:{name}]",
                f"cmd = {sys.executable}",
                f"args = -I {self.script} {name} {self.url}",
                "numprocesses = 1",
                "warmup_delay = 0",
            ]
        path = self.root / f"circus-{k}.ini"
        path.write_text("\n".join(lines) + "\n")
        return [str(BIN / "circusd"), str(path)]

    def _call(self, command: str, **properties: Any) -> dict[str, Any]:
        from circus.client import CircusClient  # type: ignore[import-untyped]

        client = CircusClient(endpoint=self.endpoint, timeout=10)
        try:
            answer: dict[str, Any] = client.call({"command": command, "properties": properties})
        finally:
            client.stop()
        if answer.get("status") != "ok":
            raise RuntimeError(f"circus {command}: {answer}")
        return answer

    async def _active(self) -> dict[str, dict[int, dict[str, Any]]]:
        """Per watcher, its live processes' infos (``started`` is circus's spawn time)."""
        answer = await asyncio.to_thread(self._call, "stats")
        return {
            watcher: {int(pid): info for pid, info in infos.items() if isinstance(info, dict)}
            for watcher, infos in answer["infos"].items()
        }

    def spawned(self, at: float) -> None:
        self.first_spawn = at if self.first_spawn is None else min(self.first_spawn, at)

    @staticmethod
    def _output(path: Path) -> IO[bytes]:
        return path.open("wb")

    async def observe(self, pids: dict[str, int]) -> None:
        active = await self._active()
        for name, pid in pids.items():
            info = active.get(name, {}).get(pid)
            if info is None:
                raise RuntimeError(f"circus does not list {name}'s pid {pid} as active")
            self.up.put(name, pid, float(info["started"]))
            self.spawned(float(info["started"]))

    async def pids(self) -> dict[str, int]:
        active = await self._active()
        return {name: pid for name, infos in active.items() for pid in infos}


SYSTEMS: dict[str, type[System]] = {
    "rosey": Rosey,
    "rosey-spawn": RoseySpawn,
    "supervisord": Supervisord,
    "circus": Circus,
}


def namespace_init(pid: int) -> int | None:
    """The init of ``pid``'s PID namespace when it is not ``pid``'s descendant (a plugin the
    Rosey fork server forked: pid 2 inside, init its sibling, pid 1); None otherwise."""
    try:
        if _inner_pid(pid) != 2:
            return None
        namespace = os.readlink(f"/proc/{pid}/ns/pid")
        parent = psutil.Process(pid).parent()
        siblings = parent.children() if parent is not None else []
    except (OSError, psutil.Error):
        return None
    for sibling in siblings:
        with contextlib.suppress(OSError):
            if _inner_pid(sibling.pid) == 1 and os.readlink(f"/proc/{sibling.pid}/ns/pid") == (
                namespace
            ):
                return sibling.pid
    return None


def _inner_pid(pid: int) -> int | None:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("NSpid:"):
                return int(line.split()[-1])
    return None
