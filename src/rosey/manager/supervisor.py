"""One supervisor per plugin: spawn, readiness, exit, health, restarts.

Each supervisor runs its plugin's *life* in a task of its own (spawn → ready → run → exit →
maybe back off and respawn), so one plugin's backoff or hang never delays another. The life
task is the only owner of the plugin's process: ``stop()`` asks it (an event) and waits for it.
States change only through ``rosey.lifecycle.states.transition``; the decisions (restart or not,
how long to wait, when a crash loop ends) come from ``rosey.lifecycle.policy``, the health
verdicts from ``rosey.lifecycle.health``.

Exit is detected by awaiting the process (no polling; ``rosey.manager.launch``). Health pings
and resource samples run in the run's :class:`~rosey.manager.health.HealthMonitor`, on their own
timers, and report back through :meth:`PluginSupervisor.set_problem` and
:meth:`PluginSupervisor.restart_unhealthy`.

The manager serializes its actions on one plugin with :attr:`PluginSupervisor.lock`; the
supervisor itself stays consistent whatever the order of ``start``/``stop`` calls (a stop
during a start ends the start with ``InvalidState``).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from typing import Any

from rosey.errors import InvalidState, RoseyError, StartFailed, describe_exit
from rosey.lifecycle.health import CommandWindow, ErrorRatePolicy
from rosey.lifecycle.policy import Backoff, CrashWindow, should_restart
from rosey.lifecycle.states import Event, State, exit_event, transition
from rosey.manager.context import ManagerContext
from rosey.manager.health import ERROR_RATE, HealthMonitor
from rosey.manager.launch import Ended, Run, await_ready, run_until_exit
from rosey.manager.spawnspec import spawn_spec
from rosey.plugins.discovery import DiscoveredPlugin
from rosey.plugins.manifest import Manifest
from rosey.protocol import subjects
from rosey.sandbox.stats import TreeSample, TreeSampler

log = logging.getLogger("rosey.manager")

#: States in which the plugin answers commands.
UP = frozenset({State.RUNNING, State.UNHEALTHY})


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
        #: Permission violations the broker reported for this plugin (security monitor).
        self.violations = 0
        #: The sample the last status was built from (faces show its thread/file counts).
        self.last_sample: TreeSample | None = None
        self.last_exit_code: int | None = None
        self.last_error: str | None = None
        #: The last_error is a dependency problem (cleared once the plugin starts).
        self.dependency_error = False
        self.next_restart_at: float | None = None
        self.crashes = CrashWindow(ctx.config.max_crash_count, ctx.config.crash_window_s)
        self.backoff = Backoff(**ctx.config.backoff.model_dump())
        self.error_policy = ErrorRatePolicy(**ctx.config.error_rate.model_dump())
        self.commands = CommandWindow(self.error_policy.window_s)
        self.health_problems: dict[str, str] = {}
        #: Serializes the manager's mutating actions on this plugin (held by the manager).
        self.lock = asyncio.Lock()
        self._attempt = 0
        self._run: Run | None = None
        self._life: asyncio.Task[None] | None = None
        self._stop_event = asyncio.Event()
        self._stop_reason = "stop requested"
        self._start_now = asyncio.Event()
        self._outcome: asyncio.Future[None] | None = None
        self._waiters: list[tuple[Callable[[PluginSupervisor], bool], asyncio.Future[None]]] = []
        self._status_sampler: TreeSampler | None = None

    # -- state ------------------------------------------------------------------------------

    def _apply(self, event: Event, reason: str) -> None:
        previous = self.state
        self.state = transition(previous, event)
        level = logging.WARNING if self.state in (State.CRASHED, State.UNHEALTHY) else logging.INFO
        if self.state is State.DISABLED:
            level = logging.ERROR if event is Event.CRASH_LOOP else logging.WARNING
        pid = self._run.process.pid if self._run else None
        log.log(level, "%s (pid %s): %s → %s: %s", self.name, pid, previous, self.state, reason)
        self.ctx.on_transition(self.name, self.state, previous, reason)
        self._notify()

    def _notify(self) -> None:
        for predicate, waiter in list(self._waiters):
            if not waiter.done() and predicate(self):
                waiter.set_result(None)

    async def wait_for(
        self, predicate: Callable[[PluginSupervisor], bool], timeout: float | None
    ) -> None:
        """Wait until ``predicate(self)`` holds after a change; ``TimeoutError`` on timeout."""
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
    def settled(self) -> bool:
        """Ready, or unable to become ready without an operator (no restart pending)."""
        return self.state in UP or (
            self.state in (State.STOPPED, State.CRASHED, State.DISABLED) and not self.is_alive
        )

    @property
    def is_alive(self) -> bool:
        """The life task runs: a process, a start, or a pending restart."""
        return self._life is not None and not self._life.done()

    @property
    def pid(self) -> int | None:
        run = self._run
        return run.process.pid if run and run.process.returncode is None else None

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
    def error_rate(self) -> float:
        return round(self.commands.rate(time.monotonic()), 3)

    def stderr_tail(self, n: int = 10) -> list[str]:
        return self._run.process.stderr_tail.lines(n) if self._run else []

    def resource_sample(self) -> TreeSample | None:
        """The process tree's use now, CPU since the previous call.

        Status keeps a sampler of its own, so asking for status never shortens the CPU window
        the health monitor judges.
        """
        run = self._run
        if run is None or run.process.returncode is not None:
            self._status_sampler = None
            self.last_sample = None
            return None
        process = run.process
        if self._status_sampler is None or self._status_sampler.pid != process.pid:
            self._status_sampler = TreeSampler(process.pid, process.confinement.members)
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
        if self.state is State.STARTING:
            self._apply(Event.STOP_REQUESTED, reason)
        return True

    async def stop(self, reason: str = "stop requested") -> None:
        """Stop the process (polite, then SIGKILL after ``stop_timeout_s``), cancel restarts.

        Idempotent; cancelling the caller does not cancel the stop.
        """
        self._stop_reason = reason
        self._stop_event.set()
        if self.state in (State.STARTING, State.RUNNING, State.UNHEALTHY):
            self._apply(Event.STOP_REQUESTED, reason)
        life = self._life
        if life is not None and not life.done():
            await asyncio.wait([life])
        if self.state is State.CRASHED:
            self._apply(Event.STOP_REQUESTED, reason)

    def disable(self, reason: str) -> None:
        """Keep it from starting; only once it has no process (the manager stops it first)."""
        if self.is_alive or self.state not in (State.STOPPED, State.CRASHED, State.DISABLED):
            raise InvalidState(self.name, self.state, "disable", "stop it first")
        self.enabled = False
        if self.state is not State.DISABLED:  # already disabled: keep the first reason
            self.last_error = reason
            self.dependency_error = False
            self._apply(Event.DISABLE, reason)

    def enable(self, reason: str = "enabled by an operator") -> None:
        """Allow it to start again; the crash window, crash count and backoff start over."""
        self.enabled = True
        self.crashes = self.crashes.cleared()
        self.crash_count = 0
        self._attempt = 0
        self.commands.clear()
        if self.state is State.DISABLED:
            self.last_error = None  # why it was disabled no longer applies
            self._apply(Event.ENABLE, reason)

    def block(self, reason: str) -> None:
        """A dependency problem keeps it from starting; ``reason`` shows in status."""
        if self.is_alive or self.state is State.DISABLED:
            return
        self.last_error = reason
        self.dependency_error = True
        if self.state in (State.STOPPED, State.CRASHED):
            self._apply(Event.DEPENDENCY_FAILED, reason)

    def record_command(self, ok: bool) -> None:
        """One of its commands finished (the router's ``.result`` / ``.error``)."""
        self.commands.record(time.monotonic(), ok)
        self.check_error_rate()

    async def ping(self, timeout: float | None = None) -> dict[str, Any]:
        """One health ping now; the plugin's answer (``BusError`` if none)."""
        reply = await self.ctx.bus.request(
            subjects.health_ping(self.name), {}, timeout=timeout or self.manifest.health.timeout_s
        )
        body = reply.json()
        return body if isinstance(body, dict) else {"ok": False, "error": "malformed answer"}

    # -- what the health monitor reports (rosey.manager.health.HealthTarget) ------------------

    def set_problem(self, kind: str, text: str | None) -> None:
        run = self._run
        if self.state not in UP or run is None or run.kill_reason is not None:
            return
        before = dict(self.health_problems)
        if text is None:
            self.health_problems.pop(kind, None)
        else:
            self.health_problems[kind] = text
        if self.health_problems == before:
            return
        if self.health_problems:
            summary = "; ".join(self.health_problems.values())
            self.last_error = summary
            if self.state is State.RUNNING:
                self._apply(Event.HEALTH_FAILED, summary)
            else:
                log.warning("%s (pid %s): still unhealthy: %s", self.name, self.pid, summary)
        elif self.state is State.UNHEALTHY:
            self._apply(Event.HEALTH_RECOVERED, "health checks pass again")

    async def restart_unhealthy(self, reason: str, *, kill: bool) -> None:
        run = self._run
        if (
            run is None
            or run.kill_reason is not None
            or run.process.returncode is not None
            or self._stop_event.is_set()
            or self.state not in UP
        ):
            return
        run.kill_reason = reason
        self.last_error = reason
        if self.state is State.RUNNING:
            self._apply(Event.HEALTH_FAILED, reason)
        if kill:
            run.process.kill_tree()
        else:
            await run.process.stop(self.manifest.stop_timeout_s)

    def check_error_rate(self) -> None:
        errors, total = self.commands.counts(time.monotonic())
        self.set_problem(ERROR_RATE, self.error_policy.problem(errors, total))

    # -- the life task ------------------------------------------------------------------------

    def _next_outcome(self) -> asyncio.Future[None]:
        """The future the current (or next) start attempt resolves: ready, or why not."""
        if self._outcome is None or self._outcome.done():
            self._outcome = asyncio.get_running_loop().create_future()
            # Nobody may be waiting when it fails: mark the exception as retrieved.
            self._outcome.add_done_callback(lambda f: f.cancelled() or f.exception())
        return self._outcome

    def _resolve(self, error: RoseyError | None) -> None:
        outcome = self._outcome
        if outcome is None or outcome.done():
            return
        if error is None:
            outcome.set_result(None)
        else:
            outcome.set_exception(error)

    async def _live(self, event: Event, reason: str) -> None:
        try:
            while True:
                if self._stop_event.is_set():
                    return  # stopped before this attempt began
                self._start_now.clear()
                self.health_problems.clear()
                self._apply(event, reason)
                ended = await self._run_once()
                if ended is None or not self._after_exit(ended):
                    return
                following = await self._backoff(ended)
                if following is None:
                    return
                event, reason = following
        finally:
            self.next_restart_at = None
            if self._stop_event.is_set():
                self._resolve(
                    InvalidState(self.name, "stopped", "start", "a stop was requested meanwhile")
                )
            else:
                why = self.last_error or f"it is {self.state}"
                self._resolve(StartFailed(self.name, f"plugin {self.name!r} did not start: {why}"))
            self._notify()

    async def _run_once(self) -> Ended | None:
        """One process from spawn to exit; None when a stop request ended it."""
        async with self.ctx.start_gate.slot():  # spawn → ready: mostly CPU
            if self._stop_event.is_set():
                self._finish_stop(None)
                return None
            try:
                spec = spawn_spec(self.ctx, self.name, self.folder, self.manifest)
                process = await self.ctx.spawner.spawn(spec)
            except (OSError, RoseyError) as exc:
                if self._stop_event.is_set():
                    self._finish_stop(None)
                    return None
                return Ended(None, start_error=StartFailed(self.name, f"cannot spawn: {exc}"))
            run = self._run = Run(process)
            try:
                start_timeout = self.manifest.health.start_timeout_s
                error = await await_ready(process, self._stop_event, start_timeout)
            except BaseException:
                process.kill_tree()
                raise
        try:
            if self._stop_event.is_set():
                self._finish_stop(await process.stop(self.manifest.stop_timeout_s))
                return None
            if error is not None:
                limit = process.limit_reason()  # before stop: it releases the cgroup
                code = await process.stop(0.5)
                if self._stop_event.is_set():
                    self._finish_stop(code)
                    return None
                return Ended(code, start_error=error, limit_reason=limit)
            ready_at = run.ready_at = time.monotonic()
            if self.dependency_error:  # it runs now: the dependency problem is over
                self.dependency_error = False
                self.last_error = None
            ms = (ready_at - process.started_at) * 1000
            self._apply(Event.READY, f"ready in {ms:.0f} ms (pid {process.pid})")
            self._resolve(None)
            run.monitor = HealthMonitor(
                self, self.ctx.bus, process=process, health=self.manifest.health
            )
            stop_requested = await run_until_exit(process, self._stop_event, run.monitor.run())
            limit = None if stop_requested else process.limit_reason()
            code = await process.stop(self.manifest.stop_timeout_s)  # reaps what is left
            if stop_requested or self._stop_event.is_set():
                self._finish_stop(code)
                return None
            return Ended(
                code, time.monotonic() - ready_at, kill_reason=run.kill_reason, limit_reason=limit
            )
        except BaseException:
            process.kill_tree()  # cancelled (the bot is going down hard): leave nothing
            raise

    def _finish_stop(self, code: int | None) -> None:
        if code is not None:
            self.last_exit_code = code
        if self.state in (State.STARTING, State.RUNNING, State.UNHEALTHY):
            self._apply(Event.STOP_REQUESTED, self._stop_reason)  # asked before it got here
        if self.state is State.STOPPING:
            what = "no process" if code is None else describe_exit(code)
            self._apply(Event.STOPPED, f"stopped ({what})")

    def _after_exit(self, ended: Ended) -> bool:
        """Record how the run ended; whether the restart policy wants it back."""
        code = ended.returncode
        if code is not None:
            self.last_exit_code = code
        failed = True
        limit = f": {ended.limit_reason}" if ended.limit_reason else ""
        if ended.start_error is not None:
            first_line = str(ended.start_error).splitlines()[0]
            self.last_error = str(ended.start_error) + limit
            self._apply(Event.START_FAILED, first_line + limit)
        elif ended.kill_reason is not None:
            self.last_error = self._crash_text(ended.kill_reason)
            self._apply(Event.CRASHED, f"crashed ({ended.kill_reason})")
        else:
            assert code is not None
            event = exit_event(code, stop_requested=False)
            failed = event is Event.CRASHED
            what = f"{'crashed' if failed else 'exited'} ({describe_exit(code)}){limit}"
            if failed:
                self.last_error = self._crash_text(what)
            self._apply(event, what)
        if self.state is State.CRASHED:
            self.crash_count += 1
            self.crashes = self.crashes.record(time.monotonic())
            if self.crashes.exceeded:
                self._give_up()
                return False
        return should_restart(
            self.manifest.restart_policy, 1 if code is None else code, False, failed=failed
        )

    async def _backoff(self, ended: Ended) -> tuple[Event, str] | None:
        """Wait out the restart delay; the event to start with, or None if a stop came."""
        delay, self._attempt = self.backoff.schedule(self._attempt, ended.ran_for, random.random())
        self.next_restart_at = time.monotonic() + delay
        if delay > 0:
            log.info("%s: restarting in %.2f s", self.name, delay)
        stopping = asyncio.ensure_future(self._stop_event.wait())
        now = asyncio.ensure_future(self._start_now.wait())
        try:
            await asyncio.wait({stopping, now}, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            now.cancel()
            self.next_restart_at = None
        if self._stop_event.is_set():
            return None
        if self._start_now.is_set():
            return Event.START_REQUESTED, "start requested"
        self.restart_count += 1
        what = "its start failed" if ended.start_error else describe_exit(ended.returncode or 0)
        if ended.kill_reason:
            what = "a failed health check"
        return Event.RESTART_DUE, f"restart {self.restart_count} after {what}"

    def _give_up(self) -> None:
        window = self.ctx.config.crash_window_s
        reason = (
            f"disabled after {len(self.crashes.timestamps)} crashes within {window:g} s "
            f"(max_crash_count {self.ctx.config.max_crash_count}); last: {self.last_error}"
        )
        self.last_error = reason
        self.enabled = False
        self._apply(Event.CRASH_LOOP, reason.splitlines()[0])
        self.ctx.on_disabled(self.name, reason)

    def _crash_text(self, text: str) -> str:
        """``text``, then the last stderr lines as ``StartFailed`` shows them."""
        tail = self.stderr_tail(8)
        if not tail:
            return text
        return text + "; last stderr lines:" + "".join(f"\n  | {line}" for line in tail)
