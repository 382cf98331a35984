"""One supervisor per plugin: spawn, readiness, exit, health, restarts.

Each supervisor runs its plugin's *life* in a task of its own (spawn → ready → run → exit →
maybe back off and respawn), so one plugin's backoff or hang never delays another. States
change only through ``rosey.lifecycle.states.transition``; the decisions (restart or not, how
long to wait, when a crash loop ends) come from ``rosey.lifecycle.policy``.

Exit is detected by awaiting the process (no polling). Health pings run on their own timer in
their own task and never block the life task or the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rosey.errors import (
    BusError,
    ExitedDuringStart,
    InvalidState,
    StartFailed,
    StartTimeout,
    describe_exit,
)
from rosey.lifecycle.policy import Backoff, CrashWindow, should_restart
from rosey.lifecycle.states import PROCESS_STATES, Event, State, exit_event, transition
from rosey.manager.context import ManagerContext
from rosey.plugins.discovery import DiscoveredPlugin
from rosey.plugins.manifest import Manifest
from rosey.protocol import subjects
from rosey.sandbox.process import PluginProcess, ResourceLimits, SpawnSpec

log = logging.getLogger("rosey.manager")

#: (plugin, new state, previous state, reason)
TransitionSink = Callable[[str, State, State, str], None]


@dataclass
class _Run:
    """One process incarnation and what became of it."""

    process: PluginProcess
    ready_at: float | None = None
    kill_reason: str | None = None
    health_task: asyncio.Task[None] | None = None
    control_task: asyncio.Task[None] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class PluginSupervisor:
    """Owns one plugin's process and state."""

    def __init__(self, plugin: DiscoveredPlugin, manifest: Manifest, ctx: ManagerContext) -> None:
        self.name = manifest.name
        self.folder = plugin.folder
        self.manifest = manifest
        self.ctx = ctx
        self.state = State.STOPPED
        self.enabled = True
        self.crash_count = 0
        self.restart_count = 0
        self.last_exit_code: int | None = None
        self.last_error: str | None = None
        self.next_restart_at: float | None = None
        self.crashes = CrashWindow(ctx.config.max_crash_count, ctx.config.crash_window_s)
        self.backoff = Backoff(
            initial_s=ctx.config.backoff.initial_s,
            factor=ctx.config.backoff.factor,
            max_s=ctx.config.backoff.max_s,
            jitter=ctx.config.backoff.jitter,
            reset_after_s=ctx.config.backoff.reset_after_s,
        )
        self.health_failures = 0
        self._attempt = 0
        self._run: _Run | None = None
        self._life: asyncio.Task[None] | None = None
        self._stop_requested = False
        self._wake = asyncio.Event()
        self._first_outcome: asyncio.Future[None] | None = None
        self._waiters: list[tuple[Callable[[PluginSupervisor], bool], asyncio.Future[None]]] = []

    # -- state ------------------------------------------------------------------------------

    def _apply(self, event: Event, reason: str) -> None:
        previous = self.state
        self.state = transition(previous, event)
        level = (
            logging.WARNING
            if self.state in (State.CRASHED, State.UNHEALTHY, State.DISABLED)
            else logging.INFO
        )
        pid = self._run.process.pid if self._run else None
        log.log(level, "%s (pid %s): %s → %s: %s", self.name, pid, previous, self.state, reason)
        self.ctx.on_transition(self.name, self.state, previous, reason)
        self._notify()

    def _notify(self) -> None:
        for predicate, waiter in list(self._waiters):
            if not waiter.done() and predicate(self):
                waiter.set_result(None)

    async def wait_for(self, predicate: Callable[[PluginSupervisor], bool], timeout: float) -> None:
        """Wait until ``predicate(self)`` holds after a transition; ``TimeoutError`` on timeout."""
        if predicate(self):
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (predicate, waiter)
        self._waiters.append(entry)
        try:
            async with asyncio.timeout(timeout):
                await waiter
        finally:
            self._waiters.remove(entry)

    @property
    def pid(self) -> int | None:
        return self._run.process.pid if self._run and self._run.process.returncode is None else None

    @property
    def uptime(self) -> float:
        if (
            self._run is None
            or self._run.ready_at is None
            or self.state not in (State.RUNNING, State.UNHEALTHY)
        ):
            return 0.0
        return time.monotonic() - self._run.ready_at

    @property
    def is_alive(self) -> bool:
        return self._life is not None and not self._life.done()

    def stderr_tail(self, n: int = 10) -> list[str]:
        return self._run.process.stderr_tail.lines(n) if self._run else []

    # -- commands -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start and wait until ready; ``StartFailed`` if it did not get there."""
        if self.state is State.DISABLED:
            raise InvalidState(
                self.name, self.state, "start", self.last_error or "it is disabled; enable it first"
            )
        if self.state in (State.RUNNING, State.UNHEALTHY):
            return
        if self.state is State.STOPPING:
            raise InvalidState(self.name, self.state, "start", "it is being stopped")
        if self.is_alive and self.state is State.STARTING and self._first_outcome is not None:
            await asyncio.shield(self._first_outcome)
            return
        await self._end_life()  # a crashed plugin waiting for its backoff: start it now
        self._stop_requested = False
        self._first_outcome = asyncio.get_running_loop().create_future()
        self._life = self.ctx.spawn_task(
            self._live(Event.START_REQUESTED, "start requested"), name=f"life:{self.name}"
        )
        await asyncio.shield(self._first_outcome)

    async def stop(self, reason: str = "stop requested") -> None:
        """Stop the process (bounded by ``stop_timeout_s`` + kill) and cancel pending restarts."""
        self._stop_requested = True
        self._wake.set()
        run = self._run
        if run is not None and self.state in PROCESS_STATES and self.state is not State.STOPPING:
            self._apply(Event.STOP_REQUESTED, reason)
        if run is not None and run.process.returncode is None:
            await run.process.stop(self.manifest.stop_timeout_s)
        await self._end_life()
        if self.state is State.CRASHED:
            self._apply(Event.STOP_REQUESTED, reason)

    async def _end_life(self) -> None:
        life = self._life
        if life is not None and not life.done():
            self._stop_requested = True
            self._wake.set()
            with contextlib.suppress(asyncio.CancelledError):
                await life
        self._life = None

    def disable(self, reason: str) -> None:
        """Only from a state without a process (the manager stops it first)."""
        if self.state is not State.DISABLED:
            self._apply(Event.DISABLE, reason)
        self.enabled = False
        self.last_error = reason

    def enable(self) -> None:
        self.enabled = True
        self.crashes = self.crashes.cleared()
        self.crash_count = 0
        self._attempt = 0
        if self.state is State.DISABLED:
            self._apply(Event.ENABLE, "enabled")

    def block(self, reason: str) -> None:
        """A dependency problem keeps it from starting; ``reason`` shows in status."""
        self.last_error = reason
        if self.state in (State.STOPPED, State.CRASHED):
            self._apply(Event.DEPENDENCY_FAILED, reason)

    # -- the life task ------------------------------------------------------------------------

    async def _live(self, first_event: Event, reason: str) -> None:
        event = first_event
        try:
            while True:
                self._apply(event, reason)
                returncode, ran_for = await self._run_once()
                self.last_exit_code = returncode
                if self._stop_requested:
                    if self.state is State.STOPPING:
                        self._apply(Event.STOPPED, f"stopped ({describe_exit(returncode)})")
                    return
                if ran_for >= self.backoff.reset_after_s:
                    self._attempt = 0
                ended = exit_event(returncode, stop_requested=False)
                if self.state is not State.CRASHED:  # a start failure already crashed it
                    why = self._run.kill_reason if self._run and self._run.kill_reason else None
                    if ended is Event.CRASHED:
                        self.last_error = self._crash_text(returncode, why)
                    self._apply(ended, why or describe_exit(returncode))
                if self.state is State.CRASHED:
                    self.crash_count += 1
                    self.crashes = self.crashes.record(time.monotonic())
                    if self.crashes.exceeded:
                        self._give_up()
                        return
                if not should_restart(
                    self.manifest.restart_policy, returncode, stop_requested=False
                ):
                    return
                delay = self.backoff.delay(self._attempt, random.random())
                self._attempt += 1
                self.next_restart_at = time.monotonic() + delay
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._wake.wait()
                self.next_restart_at = None
                if self._stop_requested:
                    return
                self.restart_count += 1
                event, reason = (
                    Event.RESTART_DUE,
                    f"restart {self.restart_count} after {describe_exit(returncode)}",
                )
        finally:
            self.next_restart_at = None
            if self._first_outcome is not None and not self._first_outcome.done():
                self._first_outcome.set_exception(
                    StartFailed(
                        self.name,
                        f"plugin {self.name!r} did not start: {self.last_error or self.state}",
                    )
                )

    def _give_up(self) -> None:
        window = self.ctx.config.crash_window_s
        reason = (
            f"disabled after {len(self.crashes.timestamps)} crashes within {window:g} s "
            f"(max_crash_count {self.ctx.config.max_crash_count}); last: {self.last_error}"
        )
        self.last_error = reason
        self.enabled = False
        self._apply(Event.CRASH_LOOP, reason)
        self.ctx.on_disabled(self.name, reason)

    def _crash_text(self, returncode: int, why: str | None) -> str:
        text = why or f"crashed ({describe_exit(returncode)})"
        tail = self.stderr_tail(8)
        return text + ("\n" + "\n".join(tail) if tail else "")

    async def _run_once(self) -> tuple[int, float]:
        """Spawn, wait for readiness, run until exit. Returns (return code, seconds ready)."""
        spec = self._spawn_spec()
        process = await self.ctx.spawner.spawn(spec)
        run = self._run = _Run(process)
        try:
            await self._await_ready(run)
        except StartFailed as exc:
            self.last_error = str(exc)
            await process.stop(0.5)
            self._apply(Event.START_FAILED, exc.args[0].splitlines()[0])
            if self._first_outcome is not None and not self._first_outcome.done():
                self._first_outcome.set_exception(exc)
            return process.returncode if process.returncode is not None else -9, 0.0
        run.ready_at = time.monotonic()
        self.health_failures = 0
        self._apply(
            Event.READY,
            f"ready in {(run.ready_at - process.started_at) * 1000:.0f} ms (pid {process.pid})",
        )
        if self._first_outcome is not None and not self._first_outcome.done():
            self._first_outcome.set_result(None)
        run.health_task = self.ctx.spawn_task(self._health_loop(run), name=f"health:{self.name}")
        try:
            returncode = await process.wait()
        finally:
            run.health_task.cancel()
        # The leader is gone; anything it left in its group goes too.
        process.kill_tree()
        process.close()
        return returncode, time.monotonic() - run.ready_at

    async def _await_ready(self, run: _Run) -> None:
        process = run.process
        timeout = self.manifest.health.start_timeout_s
        exited = asyncio.ensure_future(process.wait())
        try:
            async with asyncio.timeout(timeout):
                while True:
                    receive = asyncio.ensure_future(process.receive())
                    done, _ = await asyncio.wait(
                        {receive, exited}, return_when=asyncio.FIRST_COMPLETED
                    )
                    if receive not in done:
                        receive.cancel()
                        raise ExitedDuringStart(self.name, exited.result(), self.stderr_tail(8))
                    message = receive.result()
                    if message is None:
                        code = await exited
                        raise ExitedDuringStart(self.name, code, self.stderr_tail(8))
                    if message.get("type") == "ready":
                        return
                    if message.get("type") == "failed":
                        raise StartFailed(
                            self.name,
                            f"plugin {self.name!r} failed to start: {message.get('error')}",
                            self.stderr_tail(8),
                        )
        except TimeoutError:
            raise StartTimeout(self.name, timeout, self.stderr_tail(8)) from None
        finally:
            if not exited.done():
                exited.cancel()

    async def _health_loop(self, run: _Run) -> None:
        health = self.manifest.health
        subject = subjects.health_ping(self.name)
        started = time.monotonic()
        beat = 0
        while run.process.returncode is None:
            beat += 1
            await asyncio.sleep(max(0.0, started + beat * health.interval_s - time.monotonic()))
            try:
                await self.ctx.bus.request(subject, {}, timeout=health.timeout_s)
            except BusError as exc:
                self.health_failures += 1
                log.info("%s: health check %d failed: %s", self.name, self.health_failures, exc)
                if self.health_failures >= health.failure_threshold:
                    reason = (
                        f"health check failed {self.health_failures} times in a row "
                        f"(no answer to ping within {health.timeout_s:g} s); restarting"
                    )
                    run.kill_reason = reason
                    if self.state is State.RUNNING:
                        self._apply(Event.HEALTH_FAILED, reason)
                    # An unresponsive plugin cannot stop politely: kill it now.
                    run.process.kill_tree()
                    return
            else:
                self.health_failures = 0
                if self.state is State.UNHEALTHY and run.kill_reason is None:
                    self._apply(Event.HEALTH_RECOVERED, "health check passed again")

    async def ping(self, timeout: float | None = None) -> dict[str, Any]:
        """One health ping now; the plugin's answer."""
        reply = await self.ctx.bus.request(
            subjects.health_ping(self.name), {}, timeout=timeout or self.manifest.health.timeout_s
        )
        body = reply.json()
        return body if isinstance(body, dict) else {"ok": False}

    # -- spawn --------------------------------------------------------------------------------

    def _spawn_spec(self) -> SpawnSpec:
        identity = self.ctx.identity(self.name)
        data_dir = self.ctx.data_dir(self.name)
        bootstrap = {
            "name": self.name,
            "plugin_dir": str(self.folder.resolve()),
            "entrypoint": self.manifest.entrypoint,
            "data_dir": str(data_dir),
            "nats_url": self.ctx.nats_url,
            "user": identity.user,
            "password": identity.password,
            "inbox_prefix": identity.inbox_prefix,
            "config": self.manifest.config,
            "stop_timeout_s": self.manifest.stop_timeout_s,
        }
        return SpawnSpec(
            name=self.name,
            plugin_dir=self.folder.resolve(),
            data_dir=data_dir,
            log_path=self.ctx.log_path(self.name),
            bootstrap=bootstrap,
            limits=ResourceLimits(
                memory_mb=self.manifest.limits.memory_mb,
                cpu_percent=self.manifest.limits.cpu_percent,
                max_processes=self.manifest.limits.max_processes,
                open_files=self.manifest.limits.open_files,
            ),
        )

    @property
    def log_path(self) -> Path:
        return self.ctx.log_path(self.name)
