"""Spawning and stopping one plugin process.

A plugin process runs ``python -m rosey.sdk.runner`` in a new session (its own process group),
with a scrubbed environment, its data folder as working directory, stdout/stderr piped into a
capped log, and a control socket as its only channel for secrets (DESIGN section 3).

Spawning sits behind ``Spawner`` so that a preloaded fork server can replace the plain spawn
later without touching the manager. A ``Confine`` hook (``rosey.sandbox.confine.Sandbox``)
puts each process into its cgroups and rlimits after the spawn and before the bootstrap is
sent; the ``Confinement`` it returns is how stop reaches the whole tree (``kill_tree``), how
the limit that was hit is told (``limit_reason``) and what is cleaned up when the process is
gone (``close``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import psutil

from rosey.errors import describe_exit
from rosey.sandbox import reaper
from rosey.sandbox.limits import LimitEvents, ResourceLimits, limit_reason
from rosey.sandbox.logs import RotatingLog, StreamTail, pump
from rosey.sandbox.stats import TreeSample, TreeSampler

__all__ = [
    "Confine",
    "Confinement",
    "PlainSpawner",
    "PluginProcess",
    "ResourceLimits",
    "SpawnSpec",
    "Spawner",
    "scrubbed_env",
]

log = logging.getLogger("rosey.sandbox")

_STREAM_LIMIT = 64 * 1024  # asyncio's default StreamReader buffer limit

#: Environment variables a plugin inherits; everything else (tokens, secrets) is dropped.
_KEPT_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "PYTHONPATH")


@dataclass(frozen=True)
class SpawnSpec:
    """Everything needed to start one plugin process."""

    name: str
    plugin_dir: Path
    data_dir: Path
    log_path: Path
    bootstrap: Mapping[str, Any]
    limits: ResourceLimits = field(default_factory=ResourceLimits)
    log_max_bytes: int = 1024 * 1024
    log_backups: int = 2
    extra_env: Mapping[str, str] = field(default_factory=dict)


def scrubbed_env(spec: SpawnSpec) -> dict[str, str]:
    env = {key: os.environ[key] for key in _KEPT_ENV if key in os.environ}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env.update(
        HOME=str(spec.data_dir),
        TMPDIR=str(spec.data_dir),
        PYTHONUNBUFFERED="1",
        ROSEY_PLUGIN=spec.name,
    )
    env.update(spec.extra_env)
    return env


class Confinement:
    """What confinement put around one process. This base is "nothing": the plain spawn.

    ``rosey.sandbox.confine`` subclasses it with cgroups, rlimits and the warden.
    """

    def __init__(self, layers: Sequence[str] = ()) -> None:
        #: Enforcement layers in force (e.g. ``cgroup-v1``, ``rlimit``).
        self.layers = list(layers)
        #: True when an rlimit (not a cgroup) holds the process's memory.
        self.memory_by_rlimit = False

    def members(self) -> set[int] | None:
        """Every process of the plugin's tree, or None when only a tree walk can tell."""
        return None

    def kill(self) -> None:
        """SIGKILL every member (no-op without a cgroup)."""

    def events(self) -> LimitEvents:
        """What the kernel reported: OOM kills, refused forks."""
        return LimitEvents()

    def release(self) -> None:
        """The process is gone: remove what was created for it."""


class _ExitProtocol(asyncio.subprocess.SubprocessStreamProtocol):
    """Resolves ``exited`` the moment the process ends.

    Python 3.11's ``Process.wait()`` also waits until every pipe is closed, i.e. until any
    grandchild holding the plugin's stdout has exited too: a plugin that exits while a child
    it forked lives on would never be seen to exit.
    """

    def __init__(self, limit: int, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(limit=limit, loop=loop)
        self.exited: asyncio.Future[int] = loop.create_future()
        self.subprocess: asyncio.SubprocessTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if isinstance(transport, asyncio.SubprocessTransport):
            self.subprocess = transport

    def process_exited(self) -> None:
        super().process_exited()
        code = self.subprocess.get_returncode() if self.subprocess is not None else None
        if not self.exited.done() and code is not None:
            self.exited.set_result(code)


class PluginProcess:
    """A running plugin process and its control channel."""

    def __init__(
        self,
        spec: SpawnSpec,
        proc: asyncio.subprocess.Process,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        logfile: RotatingLog,
        exited: asyncio.Future[int] | None = None,
        transport: asyncio.SubprocessTransport | None = None,
    ) -> None:
        """``exited`` resolves with the return code at exit (default: ``proc.wait()``, which
        on Python 3.11 also waits for the pipes); ``transport`` is closed by ``close``."""
        self.spec = spec
        self.name = spec.name
        self.pid: int = proc.pid
        self.started_at = time.monotonic()
        self.stderr_tail = StreamTail()
        self.confinement = Confinement()
        self._proc = proc
        self._exited = exited if exited is not None else asyncio.ensure_future(proc.wait())
        self._transport = transport
        self._reader = reader
        self._writer = writer
        self._log = logfile
        self._stop_task: asyncio.Task[int] | None = None
        self._sampler: TreeSampler | None = None
        self._snapshot: list[psutil.Process] = []
        self._closed = False
        assert proc.stdout is not None
        assert proc.stderr is not None
        self._pumps = [
            asyncio.create_task(pump(proc.stdout, logfile, None)),
            asyncio.create_task(pump(proc.stderr, logfile, self.stderr_tail)),
        ]

    @property
    def layers(self) -> list[str]:
        """Enforcement layers in force for this process (e.g. ``["cgroup-v1", "rlimit"]``)."""
        return self.confinement.layers

    @layers.setter
    def layers(self, layers: Sequence[str]) -> None:
        self.confinement.layers = list(layers)

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode

    @property
    def log_bytes_written(self) -> int:
        """Bytes of stdout and stderr received so far (whatever rotation discarded)."""
        return self._log.written

    async def wait(self) -> int:
        """Wait for the process to exit (event-driven, no polling); its return code."""
        code = await asyncio.shield(self._exited)
        # Let the pumps take the last words off the pipes (bounded: a grandchild may hold them).
        await asyncio.wait(self._pumps, timeout=0.5)
        return code

    async def send(self, message: Mapping[str, Any]) -> None:
        """Write one control message; a dead peer is not an error here (exit is seen by wait)."""
        try:
            self._writer.write(json.dumps(message).encode() + b"\n")
            await self._writer.drain()
        except (ConnectionError, OSError):
            pass

    async def receive(self) -> dict[str, Any] | None:
        """The next control message, or None at end of file."""
        try:
            line = await self._reader.readline()
        except (ConnectionError, OSError, ValueError):
            return None
        if not line:
            return None
        try:
            message = json.loads(line)
        except json.JSONDecodeError:
            return {"type": "invalid", "raw": line[:200].decode("utf-8", "replace")}
        return message if isinstance(message, dict) else {"type": "invalid"}

    def signal_group(self, signum: int) -> None:
        """Signal the plugin's whole process group (it leads its own session)."""
        reaper.kill_group(self.pid, signum)

    async def stop(self, grace: float) -> int:
        """Stop request → SIGTERM → ``grace`` → SIGKILL of the tree. Idempotent, bounded.

        The sequence runs in its own task and is shielded, so cancelling the caller cannot
        leave a half-stopped process behind (anyio's ``Process.aclose`` does the same).
        """
        if self._stop_task is None:
            self._stop_task = asyncio.create_task(self._stop(grace))
        try:
            return await asyncio.shield(self._stop_task)
        except asyncio.CancelledError:
            await asyncio.wait([self._stop_task], timeout=grace + 2)
            raise

    async def _stop(self, grace: float) -> int:
        deadline = time.monotonic() + grace
        if self.confinement.members() is None:
            # No cgroup: remember the tree while its root is alive to show it (see kill_tree).
            self._snapshot = self._descendants()
        if self._proc.returncode is None:
            await self.send({"type": "stop"})
            if not await self._exited_within(min(grace / 2, 2.0)):
                self.signal_group(signal.SIGTERM)
                if not await self._exited_within(max(0.0, deadline - time.monotonic())):
                    log.warning(
                        "%s (pid %d): did not stop within %g s; killing", self.name, self.pid, grace
                    )
        self.kill_tree()
        code = await self.wait()
        self.close()
        return code

    async def _exited_within(self, seconds: float) -> bool:
        try:
            async with asyncio.timeout(seconds):
                await asyncio.shield(self._exited)
        except TimeoutError:
            return False
        return True

    def kill_tree(self) -> None:
        """SIGKILL the plugin's whole tree.

        With a cgroup: everything in it, grandchildren that escaped with ``setsid`` included.
        Without: its process group, plus every descendant a tree walk finds now, found before
        the stop began, or seen by the last ``sample()`` (psutil refuses to signal a reused
        pid). An orphan that left the group before any of those saw it escapes: the reason
        cgroups are the layer that matters here.
        """
        untracked: dict[int, psutil.Process] = {}
        if self.confinement.members() is None:
            untracked.update((p.pid, p) for p in self._snapshot)
            if self._sampler is not None:
                untracked.update(self._sampler.known())
            untracked.update((p.pid, p) for p in self._descendants())
            untracked.pop(self.pid, None)
        self.confinement.kill()
        self.signal_group(signal.SIGKILL)
        for proc in untracked.values():
            with contextlib.suppress(psutil.Error):
                proc.kill()

    def _descendants(self) -> list[psutil.Process]:
        if self._proc.returncode is not None:
            return []  # its orphans were re-parented: a tree walk cannot find them any more
        try:
            return psutil.Process(self.pid).children(recursive=True)
        except psutil.Error:
            return []

    def sample(self) -> TreeSample | None:
        """CPU, memory, threads, open files and process count of the whole tree, now."""
        if self._sampler is None:
            self._sampler = TreeSampler(self.pid, self.confinement.members)
        return self._sampler.sample()

    def limit_reason(self) -> str | None:
        """The resource limit this process hit, in words (e.g. "memory limit 64 MB hit: …")."""
        memory_error = self.confinement.memory_by_rlimit and any(
            "MemoryError" in line for line in self.stderr_tail.lines()
        )
        return limit_reason(self.spec.limits, self.confinement.events(), memory_error=memory_error)

    def close(self) -> None:
        """Release the channel, log file and confinement (after the process is gone)."""
        if self._closed:
            return
        self._closed = True
        for task in self._pumps:
            if not task.done():
                task.cancel()
        self._writer.close()
        self._log.close()
        if self._transport is not None and self._exited.done():
            self._transport.close()  # our ends of its pipes, even if an orphan still holds theirs
        try:
            self.confinement.release()
        except OSError as exc:
            log.warning("%s (pid %d): releasing its sandbox failed: %s", self.name, self.pid, exc)

    def describe_exit(self) -> str:
        code = self._proc.returncode
        return "running" if code is None else describe_exit(code)


#: Puts a freshly spawned process under its limits. Returning a plain list of layer names is
#: still accepted (it means: nothing to kill or release beyond the process group).
Confine = Callable[["PluginProcess"], "Confinement | list[str]"]


class Spawner(Protocol):
    """Starts plugin processes; the plain spawn today, a fork server later."""

    async def spawn(self, spec: SpawnSpec) -> PluginProcess: ...


class PlainSpawner:
    """Spawn ``python -m rosey.sdk.runner`` for each plugin."""

    def __init__(self, python: str = sys.executable, confine: Confine | None = None) -> None:
        self.python = python
        self.confine = confine

    async def spawn(self, spec: SpawnSpec) -> PluginProcess:
        spec.data_dir.mkdir(parents=True, exist_ok=True)
        logfile = RotatingLog(spec.log_path, max_bytes=spec.log_max_bytes, backups=spec.log_backups)
        ours, theirs = socket.socketpair()
        loop = asyncio.get_running_loop()
        protocol = _ExitProtocol(_STREAM_LIMIT, loop)
        try:
            # Must run on the event-loop thread: PR_SET_PDEATHSIG, armed by the child, fires
            # when the thread that forked it exits.
            transport, _ = await loop.subprocess_exec(
                lambda: protocol,
                self.python,
                "-I",
                "-m",
                "rosey.sdk.runner",
                "--control-fd",
                str(theirs.fileno()),
                "--parent-pid",
                str(os.getpid()),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                pass_fds=(theirs.fileno(),),
                start_new_session=True,
                cwd=spec.data_dir,
                env=scrubbed_env(spec),
            )
        except BaseException:
            ours.close()
            logfile.close()
            raise
        finally:
            theirs.close()
        proc = asyncio.subprocess.Process(transport, protocol, loop)
        reader, writer = await asyncio.open_connection(sock=ours)
        process = PluginProcess(
            spec, proc, reader, writer, logfile, exited=protocol.exited, transport=transport
        )
        log.info("%s (pid %d): spawned", spec.name, proc.pid)
        # The runner waits for the bootstrap before it imports any plugin code, so limits
        # applied here (cgroup membership, prlimit) are in force before the plugin's first line.
        if self.confine is not None:
            try:
                # In a worker thread: cgroup v1 writes can take milliseconds each, and with
                # many plugins starting at once they would stall the manager's event loop.
                confined = await asyncio.to_thread(self.confine, process)
                process.confinement = (
                    confined if isinstance(confined, Confinement) else Confinement(confined)
                )
            except BaseException:
                await process.stop(0.5)
                raise
        await process.send({"type": "bootstrap", **spec.bootstrap})
        return process
