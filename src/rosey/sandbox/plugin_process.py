"""One running plugin process: its control channel, its stop, its tree, its confinement.

Started by a ``Spawner`` (``rosey.sandbox.spawner``, ``rosey.sandbox.forkspawner``), which
hands it a ``ProcessHandle`` (``rosey.sandbox.handle``): exec'd or forked, it looks the same.
The ``Confinement`` a ``Confine`` hook (``rosey.sandbox.confine.Sandbox``) returns is how stop
reaches the whole tree (``kill_tree``), how the limit that was hit is told (``limit_reason``)
and what is cleaned up when the process is gone (``release``). Stopping is the one escalation
of ``rosey.sandbox.stopping``: a ``stop`` message, SIGTERM to the group, SIGKILL to the tree.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from rosey.errors import describe_exit
from rosey.protocol import control
from rosey.protocol.control import ControlMessage
from rosey.sandbox import reaper
from rosey.sandbox.handle import How, ProcessHandle
from rosey.sandbox.limits import LimitEvents, limit_reason
from rosey.sandbox.logs import IntakeBudget, RotatingLog, StreamTail, pump
from rosey.sandbox.spec import SpawnSpec
from rosey.sandbox.stats import CgroupCounters, TreeSample, TreeSampler
from rosey.sandbox.stopping import Step, escalate

if TYPE_CHECKING:
    import psutil

__all__ = ["Confine", "Confinement", "PluginProcess"]

log = logging.getLogger("rosey.sandbox")


class Confinement:
    """What confinement put around one process. This base is "nothing": the plain spawn.

    ``rosey.sandbox.confine`` subclasses it with cgroups, rlimits and the warden.
    """

    def __init__(self, layers: Sequence[str] = ()) -> None:
        #: Enforcement layers in force (e.g. ``cgroup-v1``, ``rlimit``).
        self.layers = list(layers)
        #: True when an rlimit (not a cgroup) holds the process's memory.
        self.memory_by_rlimit = False

    @property
    def has_cgroup(self) -> bool:
        """A cgroup holds the whole tree (``members`` lists it, ``kill`` ends it); without
        one only a tree walk finds it. Cheap: a stop asks it for every plugin at once."""
        return False

    def members(self) -> set[int] | None:
        """Every process of the plugin's tree, or None when only a tree walk can tell."""
        return None

    def counters(self) -> CgroupCounters | None:
        """The cgroup files counting the tree's CPU, memory and tasks, or None (``stats``)."""
        return None

    def kill(self) -> None:
        """SIGKILL every member (no-op without a cgroup)."""

    def restart_ahead(self) -> None:
        """It ended on its own and its tree is killed: a restart may follow (get ready)."""

    def events(self) -> LimitEvents:
        """What the kernel reported: OOM kills, refused forks."""
        return LimitEvents()

    def release(self) -> None:
        """The process is gone: remove what was created for it."""


class PluginProcess:
    """A running plugin process and its control channel."""

    def __init__(
        self,
        spec: SpawnSpec,
        proc: ProcessHandle,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        logfile: RotatingLog,
    ) -> None:
        """``proc``: the started process, whichever spawner started it (``rosey.sandbox.handle``);
        ``reader``/``writer``: our end of its control socket; ``logfile`` takes its output."""
        self.spec = spec
        self.name = spec.name
        self.pid: int = proc.pid
        #: How it was started: "spawned" (exec'd) or "forked" (by the fork server).
        self.how: How = proc.how
        self.started_at = time.monotonic()
        self.stderr_tail = StreamTail()
        #: How fast its output may reach the log; both pipes share it (see ``pump``).
        self.output_budget = IntakeBudget()
        self.confinement = Confinement()
        self._proc = proc
        self._exited = proc.exited
        self._reader = reader
        self._writer = writer
        self._log = logfile
        self._stop_task: asyncio.Task[int] | None = None
        self._sampler: TreeSampler | None = None
        self._snapshot: list[psutil.Process] = []
        self._closed = False
        self._pumps = [
            asyncio.create_task(pump(proc.stdout, logfile, None, self.output_budget)),
            asyncio.create_task(pump(proc.stderr, logfile, self.stderr_tail, self.output_budget)),
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

    @property
    def exit_future(self) -> asyncio.Future[int]:
        """Resolves with the return code the moment it exits: to wait on beside other
        futures without a task (``asyncio.wait`` never cancels it; never cancel it)."""
        return self._exited

    async def wait(self) -> int:
        """Wait for the process to exit (event-driven, no polling); its return code."""
        code = await asyncio.shield(self._exited)
        # Let the pumps take the last words off the pipes (bounded: a grandchild may hold them).
        pending = [pump for pump in self._pumps if not pump.done()]
        if pending:
            await asyncio.wait(pending, timeout=0.5)
        return code

    async def exited(self) -> int:
        """Wait for the process itself to exit, not for its pipes to close; its return code.

        What a restart waits for: ``stop`` then kills what is left of its tree first, so the
        pipes close at once instead of when the rest of the tree gets round to dying.
        """
        return await asyncio.shield(self._exited)

    async def send(self, message: ControlMessage) -> None:
        """Write one control message; a dead peer is not an error here (exit is seen by wait)."""
        try:
            self._writer.write(control.encode(message))
            await self._writer.drain()
        except (ConnectionError, OSError):
            pass

    async def receive(self) -> ControlMessage | None:
        """The next control message, or None at end of file.

        Plugin code can write to its end once it runs: a line that is not a known message
        comes back as ``invalid`` with a bounded, escaped note (``rosey.protocol.control``).
        """
        try:
            line = await self._reader.readline()
        except (ConnectionError, OSError, ValueError):
            return None
        if not line:
            return None
        return control.decode(line)

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
        if not self.confinement.has_cgroup:
            # No cgroup: remember the tree while its root is alive to show it (see kill_tree).
            self._snapshot = self._descendants()
        if self._proc.returncode is None:
            steps: list[Step] = [
                (lambda: self.send(control.stop()), min(grace / 2, 2.0)),
                (lambda: self.signal_group(signal.SIGTERM), grace),
            ]
            if not await escalate(self._exited, steps):
                log.warning(
                    "%s (pid %d): did not stop within %g s; killing", self.name, self.pid, grace
                )
        # Always: what it forked may outlive it (a cgroup or the tree walk finds it).
        self.kill_tree()
        code = await self.wait()
        self.close()
        return code

    def kill_tree(self) -> None:
        """SIGKILL the plugin's whole tree.

        With a cgroup: everything in it, grandchildren that escaped with ``setsid`` included.
        Without: its process group, plus every descendant a tree walk finds now, found before
        the stop began, or seen by the last ``sample()`` (psutil refuses to signal a reused
        pid). An orphan that left the group before any of those saw it escapes: the reason
        cgroups are the layer that matters here.
        """
        if self.confinement.has_cgroup:
            self.confinement.kill()
            self.signal_group(signal.SIGKILL)
            return
        import psutil  # only without a cgroup (off the manager's memory, and its stop's CPU)

        untracked: dict[int, psutil.Process] = {}
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
        import psutil  # see kill_tree

        if self._proc.returncode is not None:
            return []  # its orphans were re-parented: a tree walk cannot find them any more
        try:
            return psutil.Process(self.pid).children(recursive=True)
        except psutil.Error:
            return []

    def sample(self) -> TreeSample | None:
        """CPU, memory, threads, open files and process count of the whole tree, now."""
        if self._sampler is None:
            nofile = "rlimit" in self.layers and "missing:rlimit-nofile" not in self.layers
            self._sampler = TreeSampler(
                self.pid,
                self.confinement.members,
                self.confinement.counters(),
                count_files=not nofile,
            )
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
        if self._sampler is not None:
            self._sampler.close()  # its counter files kept open
        if self._exited.done():
            self._proc.close()  # our ends of its pipes, even if an orphan still holds theirs
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
