"""Spawning and stopping one plugin process.

A plugin process runs ``python -m rosey.sdk.runner`` in a new session (its own process group),
with a scrubbed environment, its data folder as working directory, stdout/stderr piped into a
capped log, and a control socket as its only channel for secrets (DESIGN section 3).

Spawning sits behind ``Spawner`` so that a preloaded fork server can replace the plain spawn
later without touching the manager.
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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from rosey.errors import describe_exit
from rosey.sandbox.logs import RotatingLog, StreamTail, pump

log = logging.getLogger("rosey.sandbox")

#: Environment variables a plugin inherits; everything else (tokens, secrets) is dropped.
_KEPT_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "PYTHONPATH")


@dataclass(frozen=True)
class ResourceLimits:
    """What the kernel should hold a plugin to (manifest ``limits``)."""

    memory_mb: int = 256
    cpu_percent: int = 50
    max_processes: int = 32
    open_files: int = 256


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


class PluginProcess:
    """A running plugin process and its control channel."""

    def __init__(
        self,
        spec: SpawnSpec,
        proc: asyncio.subprocess.Process,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        logfile: RotatingLog,
    ) -> None:
        self.spec = spec
        self.name = spec.name
        self.pid: int = proc.pid
        self.started_at = time.monotonic()
        self.stderr_tail = StreamTail()
        #: Enforcement layers in force for this process (e.g. ``cgroup-v1``, ``rlimit``).
        self.layers: list[str] = []
        self._proc = proc
        self._reader = reader
        self._writer = writer
        self._log = logfile
        self._stop_task: asyncio.Task[int] | None = None
        assert proc.stdout is not None
        assert proc.stderr is not None
        self._pumps = [
            asyncio.create_task(pump(proc.stdout, logfile, None)),
            asyncio.create_task(pump(proc.stderr, logfile, self.stderr_tail)),
        ]

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode

    async def wait(self) -> int:
        """Wait for the process to exit (event-driven, no polling); its return code."""
        code = await self._proc.wait()
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
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signum)

    async def stop(self, grace: float) -> int:
        """Stop request → SIGTERM → ``grace`` → SIGKILL of the group. Idempotent, bounded.

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
        if self._proc.returncode is None:
            await self.send({"type": "stop"})
            if not await self._exited_within(min(grace / 2, 2.0)):
                with contextlib.suppress(ProcessLookupError):
                    self._proc.send_signal(signal.SIGTERM)
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
                await self._proc.wait()
        except TimeoutError:
            return False
        return True

    def kill_tree(self) -> None:
        """SIGKILL everything left in the plugin's process group (children it forked)."""
        self.signal_group(signal.SIGKILL)

    def close(self) -> None:
        """Release the channel and log file (after the process is gone)."""
        for task in self._pumps:
            if not task.done():
                task.cancel()
        self._writer.close()
        self._log.close()

    def describe_exit(self) -> str:
        code = self._proc.returncode
        return "running" if code is None else describe_exit(code)


#: Puts a freshly spawned process under its limits; returns the enforcement layers in force.
Confine = Callable[["PluginProcess"], list[str]]


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
        try:
            # Must run on the event-loop thread: PR_SET_PDEATHSIG, armed by the child, fires
            # when the thread that forked it exits.
            proc = await asyncio.create_subprocess_exec(
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
        reader, writer = await asyncio.open_connection(sock=ours)
        process = PluginProcess(spec, proc, reader, writer, logfile)
        log.info("%s (pid %d): spawned", spec.name, proc.pid)
        # The runner waits for the bootstrap before it imports any plugin code, so limits
        # applied here are in force before the first line of the plugin runs.
        if self.confine is not None:
            try:
                process.layers = self.confine(process)
            except BaseException:
                await process.stop(0.5)
                raise
        await process.send({"type": "bootstrap", **spec.bootstrap})
        return process
