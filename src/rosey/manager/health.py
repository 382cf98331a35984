"""The health monitors of running plugin processes: pings and resource samples on one timer.

A ``HealthMonitor`` watches one process; it is started when the plugin is ready and stopped
when its process ends (by the plugin's life task; no task of its own). Every monitor beats on
one shared ``HealthBeat`` (per bus): one timer task for all plugins, one reply subscription
for all pings, so an idle manager with a hundred plugins wakes a few times per interval, not
two hundred (the reason: docs/BENCHMARKS.md, "idle manager CPU"). Nothing on the beat waits:
a plugin that does not answer never delays its next ping, another plugin's checks, or the
event loop.

- **ping**: a request on ``rosey.health.<name>.ping`` (addressed to the process's pid, so
  during a reload only the instance watched answers) every ``health.interval_s``, answered
  within ``health.timeout_s`` by the SDK. A failed ping makes the plugin ``unhealthy``; a
  passing one makes it ``running`` again; ``failure_threshold`` failures in a row kill it (it
  cannot stop politely if it does not answer) and the restart policy brings it back. Ping ``k``
  is sent at ``k × interval`` from ready or earlier, never later: the first beat joins the
  phase of plugins already beating (up to ``JOIN`` of an interval early), and any beat may
  run up to ``COALESCE`` of an interval (at most ``COALESCE_MAX_S``) early, so that plugins
  started around the same time share one wake-up (``rosey.lifecycle.health.BeatSchedule``).
  A ping is judged by its send time ``+ timeout`` (no answer: failed; "no responders": failed
  at once). So a plugin whose event loop is blocked is killed within
  ``interval × threshold + timeout`` of being ready.
- **resources**: on the same beat the process tree is sampled (``rosey.sandbox.stats``, the
  last line behind the kernel's limits; its cgroup's counters where it has one) against the
  manifest ``limits``; over a limit → ``unhealthy`` naming it; over for ``failure_threshold``
  samples in a row → stopped (politely, then killed) and restarted.
- **error rate**: re-evaluated at every beat, so a window that empties with time clears it
  (the router's outcomes feed it as they come; see ``PluginSupervisor.record_command``).

What the numbers mean is decided by ``rosey.lifecycle.health``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import weakref
from typing import ClassVar, Protocol

from rosey.aio import TaskSet
from rosey.bus.client import EventBus, Message, Subscription
from rosey.errors import BusError
from rosey.lifecycle.health import BeatSchedule, PingStreak
from rosey.protocol import subjects, wire
from rosey.protocol.manifest import Health
from rosey.sandbox.process import PluginProcess
from rosey.sandbox.stats import TreeSample, exceeded

__all__ = ["COALESCE", "COALESCE_MAX_S", "JOIN", "HealthBeat", "HealthMonitor", "HealthTarget"]

log = logging.getLogger("rosey.manager")

PING = "ping"
RESOURCES = "resources"
ERROR_RATE = "error_rate"

#: A beat may run this share of its interval early, to share a wake-up with other plugins.
COALESCE = 0.1
#: ... but never more than this many seconds early.
COALESCE_MAX_S = 1.0
#: A plugin's first beat may be this share of its interval early, to join others' phase.
JOIN = 0.5


class HealthTarget(Protocol):
    """What the monitor reports to (the plugin's supervisor)."""

    def set_problem(self, kind: str, text: str | None) -> None:
        """A health concern started (text) or ended (None)."""

    async def restart_unhealthy(self, reason: str, *, kill: bool) -> None:
        """End the process for ``reason`` (SIGKILL if ``kill``, else a polite stop)."""

    def check_error_rate(self) -> None:
        """Re-evaluate the command error rate now."""


class HealthMonitor:
    """Watches one process from :meth:`start` to :meth:`stop`."""

    def __init__(
        self,
        target: HealthTarget,
        bus: EventBus,
        *,
        process: PluginProcess,
        health: Health,
    ) -> None:
        self.target = target
        self.bus = bus
        self.process = process
        self.name = process.name
        self.pid = process.pid
        self.health = health
        #: The most recent resource sample (None before the first one).
        self.last_sample: TreeSample | None = None
        #: Pings sent so far (the sequence number of the last one).
        self.pings_sent = 0
        self._streak = PingStreak()
        self._over = 0
        self._sampling = True
        #: The body of every ping: the pid it is for.
        self.ping_body = wire.encode({"pid": self.pid})
        #: A restart in progress (created when one is needed: most plugins never need it).
        self._tasks: TaskSet | None = None
        self._beat: HealthBeat | None = None

    def start(self) -> None:
        """Join the shared beat (after a first sample: the CPU baseline); ``stop`` leaves it.
        No task of its own: the beat does the work (a task per plugin would only wait)."""
        beat = HealthBeat.of(self.bus)
        self.process.sample()
        beat.add(self)
        self._beat = beat

    async def stop(self) -> None:
        """Leave the beat and end a restart it began (idempotent)."""
        beat, self._beat = self._beat, None
        if beat is not None:
            beat.remove(self)
        if self._tasks is not None:
            await self._tasks.cancel_all()

    # -- called by the beat ---------------------------------------------------------------------

    def on_beat(self, beat: HealthBeat) -> None:
        """One interval passed: error rate, a ping, a resource sample."""
        self.target.check_error_rate()
        self.pings_sent += 1
        beat.send_ping(self, self.pings_sent)
        if self._sampling:
            self._check_resources()

    def ping_done(self, seq: int, error: str | None) -> None:
        """Ping ``seq`` was answered (``error`` None) or failed."""
        if error is not None:
            log.info("%s (pid %d): health ping %d failed: %s", self.name, self.pid, seq, error)
        failures = self._streak.record(seq, ok=error is None)
        timeout = self.health.timeout_s
        threshold = self.health.failure_threshold
        if failures == 0:
            self.target.set_problem(PING, None)
        elif failures >= threshold:
            self._act(
                f"health check failed {failures} times in a row (no answer to a ping within "
                f"{timeout:g} s, every {self.health.interval_s:g} s); killed to restart it",
                kill=True,
            )
        else:
            self.target.set_problem(
                PING,
                f"health check failed {failures} time(s) in a row (no answer to a ping within "
                f"{timeout:g} s); restarted after {threshold}",
            )

    def _check_resources(self) -> None:
        sample = self.process.sample()
        if sample is None:
            self._sampling = False  # the process is gone; the life task sees the exit
            return
        self.last_sample = sample
        problems = exceeded(sample, self.process.spec.limits)
        if not problems:
            self._over = 0
            self.target.set_problem(RESOURCES, None)
            return
        self._over += 1
        text = "; ".join(problems)
        if self._over >= self.health.failure_threshold:
            self._sampling = False
            self._act(
                f"{text}, in {self._over} samples in a row; stopped to restart it", kill=False
            )
            return
        self.target.set_problem(RESOURCES, text)

    def _act(self, reason: str, *, kill: bool) -> None:
        """Restart for ``reason`` in a task of its own: a polite stop takes time, the beat none."""
        if self._tasks is None:
            self._tasks = TaskSet(log, f"{self.name}: health action %s failed")
        self._tasks.spawn(
            self.target.restart_unhealthy(reason, kill=kill), name=f"unhealthy:{self.name}"
        )


class HealthBeat:
    """One timer and one reply subscription for every ``HealthMonitor`` on a bus.

    The timer task runs while at least one monitor is registered. Each wake-up runs every beat
    due within its coalescing window, publishes their pings together (one write to the socket)
    with reply subjects on the shared subscription, and arms one deadline per ping timeout for
    the whole batch.
    """

    _instances: ClassVar[weakref.WeakKeyDictionary[EventBus, HealthBeat]] = (
        weakref.WeakKeyDictionary()
    )

    @classmethod
    def of(cls, bus: EventBus) -> HealthBeat:
        """The beat of ``bus`` (created on first use)."""
        beat = cls._instances.get(bus)
        if beat is None:
            beat = cls._instances[bus] = cls(bus)
        return beat

    def __init__(self, bus: EventBus) -> None:
        self.bus = bus
        self._prefix = f"{subjects.MANAGER_INBOX_PREFIX}.health.{secrets.token_hex(8)}"
        self._schedule: BeatSchedule[HealthMonitor] = BeatSchedule(COALESCE, COALESCE_MAX_S, JOIN)
        self._tokens = itertools.count(1)
        self._pending: dict[str, tuple[HealthMonitor, int]] = {}  # reply token → (monitor, seq)
        self._outbox: list[tuple[str, str, bytes]] = []  # (subject, reply, body) to publish
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._subscription: Subscription | None = None
        #: Wake-ups that ran beats so far, and beats run (how well wake-ups are shared).
        self.wakeups = 0
        self.beats = 0

    def add(self, monitor: HealthMonitor) -> None:
        loop = asyncio.get_running_loop()
        self._schedule.add(monitor, monitor.health.interval_s, loop.time())
        self._changed.set()
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._run(), name="health beat")

    def remove(self, monitor: HealthMonitor) -> None:
        self._schedule.remove(monitor)
        for token, (owner, _) in list(self._pending.items()):
            if owner is monitor:
                del self._pending[token]
        self._changed.set()

    def send_ping(self, monitor: HealthMonitor, seq: int) -> None:
        """Queue ping ``seq`` of ``monitor`` for this wake-up's batch."""
        token = f"{next(self._tokens)}"
        self._pending[token] = (monitor, seq)
        subject = subjects.health_ping(monitor.name)
        self._outbox.append((subject, f"{self._prefix}.{token}", monitor.ping_body))

    # -- the timer task -------------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._subscription is None and len(self._schedule):
                try:
                    self._subscription = await self.bus.subscribe(
                        f"{self._prefix}.*", self._on_reply
                    )
                    await self.bus.flush()
                except BusError as exc:
                    log.warning("health checks: cannot subscribe to ping replies: %s", exc)
                    await asyncio.sleep(1.0)
            while len(self._schedule):
                due = self._schedule.due(loop.time())
                if due:
                    self.wakeups += 1
                    self.beats += len(due)
                    await self._beat(due)
                    continue
                self._changed.clear()
                wake = self._schedule.next_wake()
                try:
                    async with asyncio.timeout(None if wake is None else wake - loop.time()):
                        await self._changed.wait()
                except TimeoutError:
                    pass
        finally:
            subscription, self._subscription = self._subscription, None
            self._pending.clear()
            if subscription is not None:
                await subscription.unsubscribe()
        if len(self._schedule):  # a monitor came while the subscription was being let go
            self._task = loop.create_task(self._run(), name="health beat")

    async def _beat(self, monitors: list[HealthMonitor]) -> None:
        loop = asyncio.get_running_loop()
        for monitor in monitors:
            try:
                monitor.on_beat(self)
            except Exception:
                log.exception("%s: health check failed to run", monitor.name)
        outbox, self._outbox = self._outbox, []
        sent: list[tuple[str, float]] = []
        for subject, reply, body in outbox:
            token = reply.rpartition(".")[2]
            try:
                await self.bus.publish_raw(subject, body, reply=reply)
            except BusError as exc:
                self._finish(token, f"cannot send: {exc}")
                continue
            entry = self._pending.get(token)
            if entry is not None:
                sent.append((token, entry[0].health.timeout_s))
        by_timeout: dict[float, list[str]] = {}
        for token, timeout in sent:
            by_timeout.setdefault(timeout, []).append(token)
        for timeout, tokens in by_timeout.items():
            loop.call_later(timeout, self._expire, tokens, timeout)

    def _expire(self, tokens: list[str], timeout: float) -> None:
        late = [token for token in tokens if token in self._pending]  # most were answered
        if late:
            error = f"no answer within {timeout:g} s"
            for token in late:
                self._finish(token, error)

    async def _on_reply(self, msg: Message) -> None:
        token = msg.subject.rpartition(".")[2]
        # An empty message on a reply subject is the server's "no responders" status.
        self._finish(token, None if msg.data else "no responders (nobody subscribed)")

    def _finish(self, token: str, error: str | None) -> None:
        entry = self._pending.pop(token, None)
        if entry is None:
            return  # answered already, timed out already, or its monitor is gone
        monitor, seq = entry
        try:
            monitor.ping_done(seq, error)
        except Exception:
            log.exception("%s: judging a health ping failed", monitor.name)
