"""Helper processes the bot owns that are not plugins: the embedded nats-server and its
``nats-server -t`` config check. ``sandbox/`` is the one package that spawns; what a helper's
output *means* (readiness lines, reload outcomes) stays with its owner (``rosey.bus.server``).

A ``ManagedProcess``:

- runs in its own session with ``PR_SET_PDEATHSIG(SIGKILL)`` (``rosey.sandbox.prctl``), so the
  kernel kills it when the event-loop thread that spawned it dies, even by SIGKILL;
- has its stdout and stderr merged into one pipe that a task drains for its whole life into the
  owner's ``OutputSink`` (a full pipe would freeze the child);
- stops bounded, escalating (SIGTERM, grace, SIGKILL: ``rosey.sandbox.stopping``), idempotent,
  and cancelling the caller does not skip it: the grace is cut short (SIGKILL) and the process
  is reaped before the cancellation propagates.

``run_briefly`` runs a short command to completion within a deadline and returns its output.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import subprocess
from collections.abc import Mapping, Sequence
from typing import Protocol

from rosey.errors import describe_exit
from rosey.sandbox import prctl
from rosey.sandbox.stopping import escalate

__all__ = ["ManagedProcess", "OutputSink", "SpawnFailed", "run_briefly"]

log = logging.getLogger("rosey.sandbox")

_CHUNK = 65536
_PUMP_GRACE = 1.0  # seconds to finish reading the output once the process is gone


class SpawnFailed(OSError):
    """The helper could not be started (no binary, exec refused, the pre-exec hook failed)."""


class OutputSink(Protocol):
    """Where a helper's output goes: every chunk as it arrives, then the end (once)."""

    def feed(self, chunk: bytes) -> None: ...

    def end(self) -> None: ...


async def run_briefly(argv: Sequence[str], timeout: float) -> tuple[int, bytes]:
    """Run ``argv`` to completion; its return code and merged output.

    ``SpawnFailed`` if it cannot be started; ``TimeoutError`` (the process killed and reaped)
    if it takes longer than ``timeout`` seconds. Cancellation kills and reaps it too.
    """
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
    except OSError as exc:
        raise SpawnFailed(exc.errno, exc.strerror or str(exc)) from exc
    try:
        async with asyncio.timeout(timeout):
            output, _ = await proc.communicate()
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await asyncio.shield(proc.wait())
        raise
    return proc.returncode or 0, output


class ManagedProcess:
    """One running helper; ``start`` spawns it, ``stop`` ends it (see the module docstring)."""

    def __init__(self, proc: asyncio.subprocess.Process, sink: OutputSink, name: str) -> None:
        self.name = name
        self.pid = proc.pid
        self._proc = proc
        self._sink = sink
        self._stopping: asyncio.Task[None] | None = None
        assert proc.stdout is not None
        self._pump = asyncio.create_task(self._drain(proc.stdout), name=f"{name}-output-{proc.pid}")

    @classmethod
    async def start(
        cls, argv: Sequence[str], *, env: Mapping[str, str], sink: OutputSink, name: str
    ) -> ManagedProcess:
        """Spawn ``argv`` in a new session that dies with this thread; ``SpawnFailed`` if it
        cannot be started (the sink is then left untouched)."""
        try:
            # On the event-loop thread: the death signal fires when the forking thread exits.
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=dict(env),
                start_new_session=True,
                preexec_fn=prctl.die_with_parent_hook(signal.SIGKILL),
            )
        except OSError as exc:
            raise SpawnFailed(exc.errno, exc.strerror or str(exc)) from exc
        except subprocess.SubprocessError as exc:  # the pre-exec hook failed
            raise SpawnFailed(0, str(exc)) from exc
        return cls(proc, sink, name)

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode

    @property
    def running(self) -> bool:
        return self._proc.returncode is None

    async def wait(self) -> int:
        """Wait for the process to exit; its return code."""
        return await self._proc.wait()

    def send_signal(self, signum: int) -> None:
        """Signal the process (not its group); a process already gone is not an error."""
        if self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.send_signal(signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    async def stop(self, grace: float = 5.0) -> None:
        """SIGTERM, up to ``grace`` s, then SIGKILL; then finish reading the output.

        Idempotent; cancelling the caller kills at once and still reaps before re-raising.
        """
        if self._stopping is None:
            self._stopping = asyncio.create_task(
                self._terminate(grace), name=f"{self.name}-stop-{self.pid}"
            )
        try:
            await asyncio.shield(self._stopping)
        except asyncio.CancelledError:
            self.kill()
            await asyncio.shield(self._stopping)
            raise

    async def _terminate(self, grace: float) -> None:
        proc = self._proc
        if proc.returncode is None:
            log.info("%s stopping (pid %s)", self.name, proc.pid)
            exited = asyncio.ensure_future(proc.wait())
            try:
                if not await escalate(exited, [(lambda: self.send_signal(signal.SIGTERM), grace)]):
                    log.warning(
                        "%s (pid %s) still running after %g s: killing it",
                        self.name,
                        proc.pid,
                        grace,
                    )
                    self.kill()
                code = await exited
            finally:
                exited.cancel()
            log.info("%s stopped (pid %s, %s)", self.name, proc.pid, describe_exit(code))
        try:
            async with asyncio.timeout(_PUMP_GRACE):  # only the helper wrote to the pipe
                await self._pump
        except Exception as exc:  # TimeoutError, or a bug in a sink: close the pipe anyway
            if not isinstance(exc, TimeoutError):
                log.exception("reading the output of %s failed", self.name)
            self._pump.cancel()
            transport = getattr(proc, "_transport", None)  # no public close on Process
            if transport is not None:
                transport.close()

    async def _drain(self, stream: asyncio.StreamReader) -> None:
        try:
            while chunk := await stream.read(_CHUNK):
                self._sink.feed(chunk)
        finally:
            self._sink.end()
