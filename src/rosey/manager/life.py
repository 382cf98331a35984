"""One plugin's life task: spawn → ready → run → exit → maybe back off and respawn.

The life task is the only owner of the plugin's process: the supervisor's ``stop()`` asks it
(an event) and waits for it. States change only through ``rosey.lifecycle.states.transition``
(:meth:`PluginLife._apply`); how a run's end is read comes from ``rosey.lifecycle.exits``, whether
to restart, how long to wait and when a crash loop ends from ``rosey.lifecycle.policy``.
Exit is detected by awaiting the process (no polling; ``rosey.manager.launch``). The health
monitor of a run reports back here (``set_problem``, ``restart_unhealthy``: the
``rosey.manager.health.HealthTarget`` protocol).

The operator's side (start, stop, enable, ...) is ``rosey.manager.supervisor.PluginSupervisor``,
built on this; what status reads is ``rosey.manager.record.PluginRecord``, below it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from pathlib import Path

from rosey.aio import first_of
from rosey.errors import (
    EnvironmentNotBuilt,
    InvalidState,
    RolledBack,
    RoseyError,
    StartFailed,
    describe_exit,
)
from rosey.lifecycle.exits import after_exit, restart_reason
from rosey.lifecycle.policy import should_restart
from rosey.lifecycle.states import AT_REST, STOPPABLE, UP, Event, State, transition
from rosey.manager.context import ManagerContext
from rosey.manager.handover import Handover, Retirements
from rosey.manager.health import ERROR_RATE, HealthMonitor
from rosey.manager.launch import HANDOVER, STOP, Ended, Run, await_ready, run_until_exit
from rosey.manager.record import PluginRecord
from rosey.manager.spawnspec import spawn_spec
from rosey.plugins.discovery import DiscoveredPlugin
from rosey.protocol.manifest import Manifest
from rosey.sandbox.logs import write_marker
from rosey.sandbox.process import PluginProcess, SpawnSpec

__all__ = ["PluginLife"]

log = logging.getLogger("rosey.manager")


class PluginLife(PluginRecord):
    """The life task of one plugin and what its health monitor reports."""

    def __init__(self, plugin: DiscoveredPlugin, manifest: Manifest, ctx: ManagerContext) -> None:
        super().__init__(plugin, manifest, ctx.config)
        self.ctx = ctx
        self._run: Run | None = None
        self._life: asyncio.Task[None] | None = None
        self._stop_event = asyncio.Event()
        self._stop_reason = "stop requested"
        self._start_now = asyncio.Event()
        self._outcome: asyncio.Future[None] | None = None
        self._waiters: list[tuple[Callable[[PluginLife], bool], asyncio.Future[None]]] = []
        self._log_path: Path | None = None
        #: A reload's handover (``hand_over``): the life task takes the new instance over.
        self._handover: Handover | None = None
        #: The life task watches a ready process (a handover can be taken now).
        self._serving = False
        #: Resolved (``_wake_up``) when a stop or a handover is asked of the run it watches.
        self._wake: asyncio.Future[None] | None = None
        #: Replaced instances finishing their work; ``stop`` waits for them.
        self._retiring = Retirements()

    # -- state ------------------------------------------------------------------------------

    def _apply(self, event: Event, reason: str, *, asked: str | None = None) -> None:
        """Make the transition, log it, publish it, wake whoever waits for a state.

        ``asked``: why the stop this transition ends was asked, for the log line only. A stop
        logs one INFO line, at its end, saying why and how it ended (its start is DEBUG):
        when the bot stops, every plugin stops at once, and each line costs the manager.
        """
        previous = self.state
        self.state = transition(previous, event)
        level = logging.WARNING if self.state in (State.CRASHED, State.UNHEALTHY) else logging.INFO
        if self.state is State.DISABLED:
            level = logging.ERROR if event is Event.CRASH_LOOP else logging.WARNING
        elif self.state is State.STOPPING:
            level = logging.DEBUG  # said by the line of its end (``asked``)
        if log.isEnabledFor(level):
            # Before a process exists (stopped → starting) there is no pid: say what is known.
            who = f"{self.name} (pid {self._run.process.pid})" if self._run else self.name
            said = reason if asked is None else f"{reason}; asked: {asked}"
            log.log(level, "%s: %s → %s: %s", who, previous, self.state, said)
        self.ctx.on_transition(self.name, self.state, previous, reason)
        self._notify()

    def _wake_up(self) -> None:
        """A stop or a handover was asked: the run being watched (if any) ends its wait."""
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    def _notify(self) -> None:
        for predicate, waiter in list(self._waiters):
            if not waiter.done() and predicate(self):
                waiter.set_result(None)

    async def wait_for(
        self, predicate: Callable[[PluginLife], bool], timeout: float | None
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
    def stop_requested(self) -> asyncio.Event:
        """Set when a stop was asked for (cleared when a start begins)."""
        return self._stop_event

    @property
    def is_alive(self) -> bool:
        """The life task runs: a process, a start, or a pending restart."""
        return self._life is not None and not self._life.done()

    @property
    def settled(self) -> bool:
        """Ready, or unable to become ready without an operator (no restart pending)."""
        return self.state in UP or (self.state in AT_REST and not self.is_alive)

    @property
    def pid(self) -> int | None:
        run = self._run
        return run.process.pid if run and run.process.returncode is None else None

    def stderr_tail(self, n: int = 10) -> list[str]:
        return self._run.process.stderr_tail.lines(n) if self._run else []

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
            self._refuse_handover()
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
        try:
            spec = spawn_spec(self.ctx, self.name, self.folder, self.manifest)
        except (OSError, RoseyError) as exc:
            return self._spawn_failed(exc)
        if self.ctx.start_gate.full:
            await self._ready_folder_ahead(spec)
        async with self.ctx.start_gate.slot():  # spawn → ready: mostly CPU
            if self._stop_event.is_set():
                self._finish_stop(None)
                return None
            try:
                process = await self.ctx.spawner.spawn(spec)
            except (OSError, RoseyError) as exc:
                return self._spawn_failed(exc)
            run = self._run = Run(process)
            self._mark(f"started (pid {process.pid})")
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
            while True:
                run.monitor = HealthMonitor(
                    self, self.ctx.bus, process=process, health=self.manifest.health
                )
                self._serving = True
                wake = self._wake = asyncio.get_running_loop().create_future()
                try:
                    why = await run_until_exit(
                        process, self._stop_event, run.monitor, wake, self._handover_pending
                    )
                finally:
                    self._serving = False
                    self._wake = None
                if why != HANDOVER:
                    break
                process, run = self._take_over(process)
            self._refuse_handover()
            stop_requested = why == STOP
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

    def _spawn_failed(self, exc: OSError | RoseyError) -> Ended | None:
        """No process: a failed start (``exc`` its cause), or None when a stop came first."""
        if self._stop_event.is_set():
            self._finish_stop(None)
            return None
        failed = StartFailed(self.name, f"cannot spawn: {exc}")
        failed.__cause__ = exc  # _after_exit reads it: some causes need an operator
        return Ended(None, start_error=failed)

    async def _ready_folder_ahead(self, spec: SpawnSpec) -> None:
        """Ready the data folder while waiting for a start slot (many plugins start at once).

        A cold folder is a quota image to create and mount: processes to wait for, not CPU,
        so it need not hold one of the few slots. The spawn's own ``prepare`` then finds it
        mounted (a stat). A failure is left to that one to report.
        """
        prepare = getattr(self.ctx.spawner, "prepare", None)
        if prepare is None:
            return
        async with self.ctx.start_gate.preparing:
            if self._stop_event.is_set():
                return
            with contextlib.suppress(OSError, RoseyError):
                await asyncio.to_thread(prepare, spec)

    # -- a reload's handover ----------------------------------------------------------------

    async def hand_over(self, process: PluginProcess, manifest: Manifest, folder: Path) -> None:
        """Make ``process`` (ready, past its probation) the plugin's instance, with
        ``manifest``; the one serving until now is retired gracefully in the background.

        ``RolledBack`` when the serving instance ended meanwhile (nothing to hand over from),
        ``InvalidState`` when a stop came first: the caller still owns ``process`` then.
        """
        if not self._serving or self._stop_event.is_set():
            raise RolledBack(
                self.name,
                "reload",
                "switch",
                f"the running instance ended meanwhile ({self.state})",
            )
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._handover = Handover(process, manifest, folder, done)
        self._wake_up()
        await asyncio.shield(done)

    def _take_over(self, old: PluginProcess) -> tuple[PluginProcess, Run]:
        """In the life task: the handed-over process becomes the run; ``old`` retires."""
        handover = self._handover
        assert handover is not None
        self._handover = None
        process = handover.process
        self.manifest = handover.manifest
        self.folder = handover.folder
        run = self._run = Run(process, ready_at=time.monotonic())
        self._mark(f"reloaded: pid {process.pid} took over from pid {old.pid}")
        log.info("%s: reloaded: pid %d took over from pid %d", self.name, process.pid, old.pid)
        self._retiring.retire(self.name, old, self.manifest.stop_timeout_s)
        if self.health_problems:
            self.health_problems.clear()
            if self.state is State.UNHEALTHY:
                self._apply(Event.HEALTH_RECOVERED, "a reload replaced the unhealthy instance")
        handover.done.set_result(None)
        return process, run

    def _handover_pending(self) -> bool:
        return self._handover is not None

    def _refuse_handover(self) -> None:
        """A handover the life task will not take (a stop or an exit came first)."""
        handover, self._handover = self._handover, None
        if handover is not None and not handover.done.done():
            handover.done.set_exception(
                InvalidState(self.name, str(self.state), "reload", "a stop or an exit came first")
            )

    async def wait_retired(self) -> None:
        """Until every instance a reload replaced has ended."""
        await self._retiring.wait()

    def _finish_stop(self, code: int | None) -> None:
        if code is not None:
            self.last_exit_code = code
        if self.state in STOPPABLE:
            self._apply(Event.STOP_REQUESTED, self._stop_reason)  # asked before it got here
        if self.state is State.STOPPING:
            what = "no process" if code is None else describe_exit(code)
            self._apply(Event.STOPPED, f"stopped ({what})", asked=self._stop_reason)
            if code is not None:
                self._mark(f"stopped ({what})")

    def _after_exit(self, ended: Ended) -> bool:
        """Record how the run ended (``rosey.lifecycle.exits``); whether the restart policy
        wants it back."""
        code = ended.returncode
        if code is not None:
            self.last_exit_code = code
        verdict = after_exit(ended.facts)
        if verdict.error is not None:
            self.last_error = (
                self._crash_text(verdict.error) if verdict.error_wants_tail else verdict.error
            )
        self._apply(verdict.event, verdict.reason)
        self._mark(verdict.marker)
        if ended.start_error and isinstance(ended.start_error.__cause__, EnvironmentNotBuilt):
            return False  # built by `rosey plugin validate`, never at start: no use retrying
        if self.state is State.CRASHED and self._record_crash(time.monotonic()):
            self._give_up()
            return False
        return should_restart(
            self.manifest.restart_policy, 1 if code is None else code, False, failed=verdict.failed
        )

    async def _backoff(self, ended: Ended) -> tuple[Event, str] | None:
        """Wait out the restart delay; the event to start with, or None if a stop came."""
        delay, self._attempt = self.backoff.schedule(self._attempt, ended.ran_for, random.random())
        self.next_restart_at = time.monotonic() + delay
        if delay > 0:
            log.info("%s: restarting in %.2f s", self.name, delay)
        try:
            await first_of(self._stop_event.wait(), self._start_now.wait(), timeout=delay)
        finally:
            self.next_restart_at = None
        if self._stop_event.is_set():
            return None
        if self._start_now.is_set():
            return Event.START_REQUESTED, "start requested"
        self._count_restart()
        return Event.RESTART_DUE, restart_reason(ended.facts, self.restart_count)

    def _give_up(self) -> None:
        window = self.ctx.config.crash_window_s
        reason = (
            f"disabled after {len(self.crashes.timestamps)} crashes within {window:g} s "
            f"(max_crash_count {self.ctx.config.max_crash_count}); last: {self.last_error}"
        )
        self.last_error = reason
        self.enabled = False
        self._apply(Event.CRASH_LOOP, reason.splitlines()[0])
        self.ctx.on_disabled(self.name, reason, self.manifest.critical)

    # -- marker lines in its log (rosey logs) --------------------------------------------------

    def _mark(self, what: str) -> None:
        """``──── NAME what ────`` in the plugin's log: where one run begins or ends."""
        try:
            if self._log_path is None:  # resolved once: markers are written at every stop
                self._log_path = self.ctx.log_path(self.name)
            write_marker(self._log_path, self.name, what)
        except OSError as exc:  # a full disk must not stop the supervisor
            log.debug("%s: cannot write a marker to its log: %s", self.name, exc)

    def _crash_text(self, text: str) -> str:
        """``text``, then the last stderr lines as ``StartFailed`` shows them."""
        tail = self.stderr_tail(8)
        if not tail:
            return text
        return text + "; last stderr lines:" + "".join(f"\n  | {line}" for line in tail)
