"""Plugins forked from a preloaded fork server (``rosey.sandbox.forkserver``) instead of exec'd.

``ForkSpawner`` is a ``PlainSpawner`` whose ``launch`` asks the bot's fork server for the process
(spawn→ready in milliseconds instead of ~100 ms, a few MiB of unshared memory instead of ~15).
Everything else a plugin gets is the plain spawn's, in the same order: data folder and quota,
control socket, its cgroup and rlimits (``confine``) before the bootstrap, then the runner puts
itself under namespaces, uid, Landlock and seccomp before any plugin code runs
(``rosey.sdk.runner.run``). Only specs without an interpreter of their own (``spec.python`` is
None: the bot's environment) are forked; the others are spawned plainly.

Faults: if the fork server dies or fails a request, it is logged, the plugin being started (and
any started meanwhile) is spawned plainly, and the server is restarted after a backoff that
doubles up to ``RESTART_MAX`` seconds. Running plugins are children of the bot, not of the
server (``rosey.sandbox.orphans``): its death touches none of them. It dies with the bot (its
death signal) and the warden is told its pid (``on_server``) as well.

A standby (``rosey.sandbox.standby``) is kept ready while the server is up: a launch takes it
when there is one (no fork, no cgroup move on its way: the sandbox renames the standby's leaf),
else asks the server as before (``rosey.sandbox.standby.StandbyKeeper``). The pool is refilled
in the background once the plugin that took the standby is confined (``spawn``): the refill's
move into its leaf holds the kernel's cgroup mutex for an RCU grace period, which that plugin's
rename and limits would wait for. The standby is discarded when the server is lost, and on
``close``; none is made once ``stopping``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
from array import array
from collections.abc import Callable

from rosey.errors import describe_exit
from rosey.sandbox.exits import ExitWatch
from rosey.sandbox.forkserver import Forked
from rosey.sandbox.handle import AdoptedHandle, ProcessHandle
from rosey.sandbox.orphans import reaper
from rosey.sandbox.plugin_process import Confine, PluginProcess
from rosey.sandbox.spawner import PlainSpawner
from rosey.sandbox.spec import SpawnSpec, base_env, scrubbed_env
from rosey.sandbox.standby import (
    POOL_SIZE,
    Namespaces,
    Placement,
    Standby,
    StandbyKeeper,
    reap_init,
)

__all__ = ["ENTRY", "ForkServer", "ForkServerError", "ForkSpawner", "namespaces_for"]

log = logging.getLogger("rosey.sandbox")

#: What the fork server preloads and runs in each child.
ENTRY = "rosey.sdk.runner:run_forked"
START_TIMEOUT = 20.0
REPLY_TIMEOUT = 5.0
STOP_TIMEOUT = 1.0
RESTART_FIRST = 0.1
RESTART_MAX = 30.0


def namespaces_for(spec: SpawnSpec) -> Namespaces:
    """What the fork server makes ahead for ``spec``: the PID and IPC namespaces its bootstrap
    asks the runner for (None: none), so that the runner needs no waiter outside them."""
    isolation = spec.bootstrap.get("isolation")
    if not isinstance(isolation, dict):
        return None
    made = {
        "pid": bool(isolation.get("pid_namespace")),
        "ipc": bool(isolation.get("ipc_namespace")),
    }
    return made if any(made.values()) else None


class ForkServerError(OSError):
    """The fork server is gone, refused a request, or did not answer: spawn plainly."""


class ForkServer:
    """The bot's side of one fork server process: start it, ask it to fork, stop it."""

    def __init__(self, proc: subprocess.Popen[bytes], sock: socket.socket) -> None:
        self._proc = proc
        self._sock = sock
        self._lock = asyncio.Lock()
        self._watch: ExitWatch | None = None
        #: Called once, with the exit code, when the process ends while we still use it.
        self.on_exit: Callable[[int], None] | None = None
        self.broken = False

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def returncode(self) -> int | None:
        return self._watch.returncode if self._watch is not None else self._proc.returncode

    @classmethod
    async def start(
        cls, python: str = sys.executable, timeout: float = START_TIMEOUT
    ) -> ForkServer:
        """Start it and wait until it has preloaded the runner; ``ForkServerError`` if not."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            # From the event-loop thread: its death signal fires when that thread exits. Popen,
            # not asyncio: its stop must be possible without a loop (``Sandbox.close``), and
            # the fork+exec is a millisecond, once per bot.
            proc = subprocess.Popen(  # noqa: ASYNC220
                [
                    python,
                    "-I",
                    "-m",
                    "rosey.sandbox.forkserver",
                    "--socket-fd",
                    str(theirs.fileno()),
                    "--parent-pid",
                    str(os.getpid()),
                    "--entry",
                    ENTRY,
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),),
                start_new_session=True,  # out of reach of Ctrl-C in the bot's terminal
                cwd="/",
                env=base_env(),  # what a forked plugin's /proc/PID/environ shows
            )
        except OSError as exc:
            ours.close()
            raise ForkServerError(f"cannot start the fork server: {exc}") from exc
        finally:
            theirs.close()
        reaper.claimed.add(proc.pid)
        ours.setblocking(False)
        server = cls(proc, ours)
        server._watch = ExitWatch(proc.pid, asyncio.get_running_loop())
        server._watch.exited.add_done_callback(server._exited)
        try:
            async with asyncio.timeout(timeout):
                hello = await asyncio.get_running_loop().sock_recv(ours, 4096)
            if "ready" not in json.loads(hello or b"{}"):
                raise ForkServerError(f"the fork server did not start (said {hello[:80]!r})")
        except BaseException as exc:
            server.close()  # also when cancelled: it must not outlive this call
            if isinstance(exc, ForkServerError) or not isinstance(
                exc, TimeoutError | ValueError | TypeError | OSError
            ):
                raise
            raise ForkServerError(f"the fork server did not start: {exc!r}") from exc
        return server

    def _exited(self, future: asyncio.Future[int]) -> None:
        reaper.claimed.discard(self.pid)
        if self.on_exit is not None and not future.cancelled():
            self.on_exit(future.result())

    async def fork(
        self, cwd: str, env: dict[str, str], fds: list[int], made: Namespaces = None
    ) -> Forked:
        """Fork a runner with ``fds`` (control socket, stdout, stderr), into the namespaces
        ``made`` asks for (made ahead: ``rosey.sandbox.namespaces.premake``); its pid and its
        init's, both our children now.

        Any failure marks the server broken (a late answer would answer the next request).
        """
        request = {"cwd": cwd, "env": env, "namespaces": made}
        return await self._ask(json.dumps(request).encode(), fds)

    async def fork_standby(self, fd: int, made: Namespaces = None) -> Forked:
        """Fork a standby waiting on ``fd`` (its end of a socket pair), in the namespaces
        ``made`` asks for; its pid and its init's, our children."""
        request = {"standby": True, "namespaces": made}
        return await self._ask(json.dumps(request).encode(), [fd])

    async def _ask(self, request: bytes, fds: list[int]) -> Forked:
        async with self._lock:
            if self.broken or self.returncode is not None:
                self.broken = True
                raise ForkServerError("the fork server is gone")
            loop = asyncio.get_running_loop()
            try:
                ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array("i", fds))]
                self._sock.sendmsg([request], ancillary)  # a few hundred bytes: never blocks
                async with asyncio.timeout(REPLY_TIMEOUT):
                    reply = await loop.sock_recv(self._sock, 4096)
            except BaseException as exc:
                self.broken = True
                if isinstance(exc, TimeoutError | OSError):
                    raise ForkServerError(f"the fork server did not answer: {exc!r}") from exc
                raise
        if not reply:
            self.broken = True
            raise ForkServerError("the fork server closed its socket")
        try:
            answer = json.loads(reply)
            if "pid" in answer:
                init = answer.get("init")
                return Forked(int(answer["pid"]), None if init is None else int(init))
            problem = str(answer["error"])
        except (ValueError, TypeError, KeyError) as exc:
            self.broken = True
            raise ForkServerError(f"the fork server answered nonsense: {reply[:80]!r}") from exc
        raise ForkServerError(f"the fork server refused: {problem}")

    def close(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop it (its socket closed: it exits), bounded: SIGKILL after ``timeout``."""
        self.on_exit = None
        self.broken = True
        self._sock.close()
        if self._watch is not None:
            self._watch.close()
            if self._watch.returncode is not None:  # reaped already: its pid may be reused
                self._proc.returncode = self._watch.returncode
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                self._proc.send_signal(signal.SIGKILL)
            self._proc.wait()
        except ChildProcessError:
            pass
        reaper.claimed.discard(self.pid)


class ForkSpawner(PlainSpawner):
    """Forks plugins of the bot's environment from a fork server; spawns the others plainly."""

    def __init__(
        self,
        python: str = sys.executable,
        confine: Confine | None = None,
        prepare: Callable[[SpawnSpec], None] | None = None,
        *,
        on_server: Callable[[int], None] | None = None,
        placement: Placement | None = None,
        standby: bool = True,
        namespaces: Namespaces = None,
    ) -> None:
        """``on_server`` is told each fork server's pid (the warden's ``watch_pid``);
        ``placement`` puts a standby in its cgroups (the sandbox); ``standby=False``: none;
        ``namespaces``: those the standby is made in until a launch asks for others."""
        super().__init__(python, confine, prepare)
        self.on_server = on_server
        self.placement = placement
        #: The standby pool (``rosey.sandbox.standby``), fed by this spawner's fork server.
        self.keeper = StandbyKeeper(
            lambda: self.server, self._lost, placement, size=POOL_SIZE if standby else 0
        )
        self.keeper.made = namespaces if namespaces and any(namespaces.values()) else None
        self.server: ForkServer | None = None
        self._reaping = False
        self._started = False
        self._closed = False
        self._restart: asyncio.Task[None] | None = None
        #: Seconds before the next restart of a lost server (doubles up to ``RESTART_MAX``).
        self.restart_delay = RESTART_FIRST

    async def start(self) -> bool:
        """Start the fork server now (else the first spawn does); False if it did not come up
        (plugins are spawned plainly, and it is retried after a backoff)."""
        self._started = True
        if self._closed:
            return False
        if not self._reaping:
            if not reaper.acquire():
                log.warning("fork server: unavailable here; plugins are spawned plainly")
                return False
            self._reaping = True
        try:
            server = await ForkServer.start(self.python)
        except ForkServerError as exc:
            log.error("fork server: %s; spawning plugins plainly meanwhile", exc)
            self._schedule_restart()
            return False
        if self._closed:  # closed while it started
            server.close()
            return False
        server.on_exit = lambda code: self._lost(server, f"it ended ({describe_exit(code)})")
        self.server = server
        if self.on_server is not None:
            self.on_server(server.pid)
        log.info("fork server ready (pid %d)", server.pid)
        self.keeper.wanted()
        return True

    def _lost(self, server: ForkServer, why: str) -> None:
        if self.server is not server:
            return
        self.server = None
        log.error(
            "fork server (pid %d) lost: %s; spawning plugins plainly until it is back",
            server.pid,
            why,
        )
        server.close(timeout=0.05)  # dead or useless: no reason to wait for it
        self.keeper.lost()  # what it made goes with it
        self._schedule_restart()

    def _schedule_restart(self) -> None:
        pending = self._restart is not None and not self._restart.done()
        if self._closed or (pending and self._restart is not asyncio.current_task()):
            return  # (a restart that failed schedules the next one from its own task)
        delay, self.restart_delay = self.restart_delay, min(self.restart_delay * 2, RESTART_MAX)
        self._restart = asyncio.get_running_loop().create_task(
            self._restart_after(delay), name="fork server restart"
        )

    async def _restart_after(self, delay: float) -> None:
        await asyncio.sleep(delay)
        if not self._closed and self.server is None:
            await self.start()

    async def spawn(self, spec: SpawnSpec) -> PluginProcess:
        """``PlainSpawner.spawn``; then the pool is refilled if this start took the standby."""
        try:
            return await super().spawn(spec)
        finally:
            self.keeper.resume()

    async def launch(self, spec: SpawnSpec, channel: socket.socket) -> ProcessHandle:
        """Fork it when it runs in the bot's environment and the server is up; else spawn."""
        if spec.python is None and not self._started:
            await self.start()
        server = self.server
        if spec.python is not None or server is None:
            return await super().launch(spec, channel)
        out_read, out_write = os.pipe()
        err_read, err_write = os.pipe()
        cwd, env, fds = (
            str(spec.data_dir),
            scrubbed_env(spec),
            [channel.fileno(), out_write, err_write],
        )
        made = namespaces_for(spec)
        try:
            forked = self.keeper.take(cwd, env, fds, made)
            if forked is None:
                forked = await server.fork(cwd, env, fds, made)
        except BaseException as exc:
            for fd in (out_read, err_read):
                os.close(fd)
            if not isinstance(exc, ForkServerError):
                raise  # cancelled: the server is marked broken, the next spawn replaces it
            if server.broken:
                self._lost(server, str(exc))
            else:
                log.warning("%s: the fork server refused it (%s); spawned plainly", spec.name, exc)
            return await super().launch(spec, channel)
        finally:
            os.close(out_write)
            os.close(err_write)
        # No await since the answer: the orphan reaper cannot have touched them.
        pid, init = forked
        reaper.claimed.add(pid)
        if init is not None:
            reaper.claimed.add(init)
        self.restart_delay = RESTART_FIRST  # it served: the next loss restarts it quickly again
        try:
            handle = await AdoptedHandle.adopt(pid, out_read, err_read)
        except BaseException:
            reaper.claimed.discard(pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            if init is not None:
                reap_init(init)
            raise

        def exited(_: object) -> None:
            reaper.claimed.discard(pid)
            if init is not None:
                reap_init(init)

        handle.exited.add_done_callback(exited)
        return handle

    @property
    def standby(self) -> Standby | None:
        """The standby ready for the next launch, if any."""
        return self.keeper.standby

    @property
    def filling(self) -> bool:
        """Whether a standby is being made (or due to be)."""
        return self.keeper.filling

    def stopping(self) -> None:
        """The bot is stopping its plugins: no standby is made from now on."""
        self.keeper.stopping()

    def close(self) -> None:
        """Stop the fork server (bounded), the restarts and the standby; forked plugins are
        not touched."""
        self._closed = True
        self.keeper.close()
        if self._restart is not None:
            self._restart.cancel()
        server, self.server = self.server, None
        if server is not None:
            server.close()
        if self._reaping:
            self._reaping = False
            reaper.release()
