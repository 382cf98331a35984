"""One supervisor per plugin: what the manager asks of it (start, stop, enable, ...).

Each supervisor runs its plugin's *life* in a task of its own (spawn → ready → run → exit →
maybe back off and respawn; ``rosey.manager.life``), so one plugin's backoff or hang never
delays another. The life task is the only owner of the plugin's process: ``stop()`` asks it
(an event) and waits for it. What status reads is the record below it
(``rosey.manager.record``): ``PluginSupervisor`` → ``PluginLife`` → ``PluginRecord``.

The manager serializes its actions on one plugin with :attr:`PluginSupervisor.lock`; the
supervisor itself stays consistent whatever the order of ``start``/``stop`` calls (a stop
during a start ends the start with ``InvalidState``).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from rosey.errors import InvalidState
from rosey.lifecycle.states import AT_REST, STOPPABLE, UP, Event, State, accepts
from rosey.manager.context import ManagerContext
from rosey.manager.life import PluginLife
from rosey.plugins.discovery import DiscoveredPlugin
from rosey.protocol import subjects
from rosey.protocol.manifest import Manifest
from rosey.sandbox.stats import TreeSample, TreeSampler, cpu_seconds

__all__ = ["UP", "PluginSupervisor"]  # UP: from rosey.lifecycle.states, still importable here


class PluginSupervisor(PluginLife):
    """Owns one plugin's process and state: what the manager asks of it."""

    def __init__(self, plugin: DiscoveredPlugin, manifest: Manifest, ctx: ManagerContext) -> None:
        super().__init__(plugin, manifest, ctx)
        #: Serializes the manager's mutating actions on this plugin (held by the manager).
        self.lock = asyncio.Lock()
        self._status_sampler: TreeSampler | None = None

    # -- what status reads ----------------------------------------------------------------------

    @property
    def uptime(self) -> float:
        run = self._run
        if run is None or run.ready_at is None or self.state not in UP:
            return 0.0
        return time.monotonic() - run.ready_at

    @property
    def layers(self) -> list[str]:
        """The enforcement layers in force for the current (or last) process."""
        return list(self._run.process.layers) if self._run else []

    @property
    def started_how(self) -> str | None:
        """``forked`` (from the fork server) or ``spawned``: how its current process started."""
        run = self._run
        return run.process.how if run and run.process.returncode is None else None

    def cpu_seconds(self) -> float | None:
        """CPU seconds its cgroup has used (the whole tree, nanosecond counter), or None when
        its process has no cgroup to count it."""
        run = self._run
        if run is None or run.process.returncode is not None:
            return None
        counters = run.process.confinement.counters()
        return None if counters is None else cpu_seconds(counters)

    def resource_sample(self) -> TreeSample | None:
        """The process tree's use now, CPU since the previous call.

        Status keeps a sampler of its own, so asking for status never shortens the CPU window
        the health monitor judges. It reads the cgroup's counters where there are some, as the
        monitor does (the same memory figure the limit is judged on), and walks ``/proc`` with
        psutil only without them: status is asked all the time (``list``, the dashboard), and
        psutil would otherwise stay in the idle manager's memory with a handle per process.
        """
        run = self._run
        if run is None or run.process.returncode is not None:
            self._status_sampler = None
            self.last_sample = None
            return None
        process = run.process
        if self._status_sampler is None or self._status_sampler.pid != process.pid:
            confinement = process.confinement
            sampler = TreeSampler(process.pid, confinement.members, confinement.counters())
            sampler.close()  # opens its files at each status (the monitor's stay open)
            self._status_sampler = sampler
        self.last_sample = self._status_sampler.sample()
        return self.last_sample

    # -- commands -----------------------------------------------------------------------------

    async def start(self, reason: str = "start requested") -> None:
        """Start and wait until ready; ``StartFailed`` if it did not get there.

        A no-op when it is running; joins an attempt already under way; skips the backoff
        of a pending restart.
        """
        if self.state is State.DISABLED:
            raise InvalidState(
                self.name, self.state, "start", self.last_error or "it is disabled; enable it first"
            )
        if self.state in UP:
            return
        if self.state is State.STOPPING or (self._stop_event.is_set() and self.is_alive):
            raise InvalidState(
                self.name, State.STOPPING, "start", "it is being stopped; start it once stopped"
            )
        outcome = self._next_outcome()
        if self.is_alive:
            if self.state is not State.STARTING:
                self._start_now.set()  # waiting for its backoff: go now
        else:
            self._stop_event.clear()
            self._start_now.clear()
            self._life = self.ctx.spawn_task(
                self._live(Event.START_REQUESTED, reason), name=f"life:{self.name}"
            )
        await asyncio.shield(outcome)

    def interrupt_start(self, reason: str) -> bool:
        """If it is starting or waiting to restart, stop that now; whether it was.

        A stop must not wait behind a start that may take ``start_timeout_s`` (the manager's
        per-plugin lock would make it): this ends the attempt at once, the start's caller gets
        ``InvalidState``, and the stop that follows finds the work done.
        """
        if not self.is_alive or self.state not in (State.STARTING, State.CRASHED, State.STOPPED):
            return False
        self._stop_reason = reason
        self._stop_event.set()
        self._wake_up()
        if self.state is State.STARTING:
            self._apply(Event.STOP_REQUESTED, reason)
        return True

    async def stop(self, reason: str = "stop requested") -> None:
        """Stop the process (polite, then SIGKILL after ``stop_timeout_s``), cancel restarts.

        Idempotent; cancelling the caller does not cancel the stop.
        """
        self._stop_reason = reason
        self._stop_event.set()
        self._wake_up()
        if self.state in STOPPABLE:
            self._apply(Event.STOP_REQUESTED, reason)
        life = self._life
        if life is not None and not life.done():
            await asyncio.wait([life])
        await self.wait_retired()  # an instance a reload replaced may still be finishing
        if self.state is State.CRASHED:
            self._apply(Event.STOP_REQUESTED, reason)

    def disable(self, reason: str) -> None:
        """Keep it from starting; only once it has no process (the manager stops it first)."""
        if self.is_alive or self.state not in AT_REST:
            raise InvalidState(self.name, self.state, "disable", "stop it first")
        self.enabled = False
        if self.state is not State.DISABLED:  # already disabled: keep the first reason
            self.last_error = reason
            self.dependency_error = False
            self._apply(Event.DISABLE, reason)

    def enable(self, reason: str = "enabled by an operator") -> None:
        """Allow it to start again; the crash window, crash count and backoff start over."""
        self.enabled = True
        self._clear_history()
        if self.state is State.DISABLED:
            self.last_error = None  # why it was disabled no longer applies
            self._apply(Event.ENABLE, reason)

    def block(self, reason: str) -> None:
        """A dependency problem keeps it from starting; ``reason`` shows in status."""
        if self.is_alive or self.state is State.DISABLED:
            return
        self.last_error = reason
        self.dependency_error = True
        if accepts(self.state, Event.DEPENDENCY_FAILED):
            self._apply(Event.DEPENDENCY_FAILED, reason)

    async def restart(self, reason: str = "restart requested") -> None:
        """Stop (if running), then start and wait until ready; counted as a restart."""
        await self.stop(reason)
        self._count_restart()
        await self.start(reason)

    def record_command(self, ok: bool) -> None:
        """One of its commands finished (the router's ``.result`` / ``.error``)."""
        self.commands.record(time.monotonic(), ok)
        self.check_error_rate()

    async def ping(self, timeout: float | None = None) -> dict[str, Any]:
        """One health ping now, to the current instance; its answer (``BusError`` if none).

        Addressed by pid: while a replaced instance is still finishing, it must not answer
        for the new one.
        """
        pid = self.pid
        reply = await self.ctx.bus.request(
            subjects.health_ping(self.name),
            {} if pid is None else {"pid": pid},
            timeout=timeout or self.manifest.health.timeout_s,
        )
        body = reply.json()
        return body if isinstance(body, dict) else {"ok": False, "error": "malformed answer"}
