"""The health monitor of one running plugin process: pings and resource samples.

Started when the plugin is ready, cancelled when its process ends; owned by the plugin's life
task. Each concern runs on its own timer in its own task, and each ping is a task of its own,
so a plugin that does not answer never delays its next ping, another plugin's checks, or the
event loop:

- **ping**: a request on ``rosey.health.<name>.ping`` every ``health.interval_s``, answered
  within ``health.timeout_s`` by the SDK. A failed ping makes the plugin ``unhealthy``; a
  passing one makes it ``running`` again; ``failure_threshold`` failures in a row kill it (it
  cannot stop politely if it does not answer) and the restart policy brings it back. Ping ``k``
  is sent at ``k × interval`` and judged by ``k × interval + timeout``, so a plugin whose event
  loop is blocked is killed within ``interval × threshold + timeout`` of being ready.
- **resources**: the process tree sampled every ``health.interval_s`` (``rosey.sandbox.stats``,
  the last line behind the kernel's limits) against the manifest ``limits``; over a limit →
  ``unhealthy`` naming it; over for ``failure_threshold`` samples in a row → stopped
  (politely, then killed) and restarted.
- **error rate**: re-evaluated at every ping beat, so a window that empties with time clears
  it (the router's outcomes feed it as they come; see ``PluginSupervisor.record_command``).

What the numbers mean is decided by ``rosey.lifecycle.health``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from rosey.bus.client import EventBus
from rosey.errors import BusError
from rosey.lifecycle.health import PingStreak
from rosey.protocol import subjects
from rosey.protocol.manifest import Health
from rosey.sandbox.process import PluginProcess
from rosey.sandbox.stats import TreeSample, exceeded

__all__ = ["HealthMonitor", "HealthTarget"]

log = logging.getLogger("rosey.manager")

PING = "ping"
RESOURCES = "resources"
ERROR_RATE = "error_rate"


class HealthTarget(Protocol):
    """What the monitor reports to (the plugin's supervisor)."""

    def set_problem(self, kind: str, text: str | None) -> None:
        """A health concern started (text) or ended (None)."""

    async def restart_unhealthy(self, reason: str, *, kill: bool) -> None:
        """End the process for ``reason`` (SIGKILL if ``kill``, else a polite stop)."""

    def check_error_rate(self) -> None:
        """Re-evaluate the command error rate now."""


class HealthMonitor:
    """Watches one process; :meth:`run` until cancelled."""

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
        self._streak = PingStreak()

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(self._pings(), name=f"pings:{self.name}")
            group.create_task(self._resources(), name=f"resources:{self.name}")

    async def _pings(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        seq = 0
        async with asyncio.TaskGroup() as pings:
            while True:
                seq += 1
                await asyncio.sleep(max(0.0, start + seq * self.health.interval_s - loop.time()))
                self.target.check_error_rate()
                pings.create_task(self._ping(seq), name=f"ping:{self.name}:{seq}")

    async def _ping(self, seq: int) -> None:
        timeout = self.health.timeout_s
        try:
            await self.bus.request(subjects.health_ping(self.name), {}, timeout=timeout)
        except BusError as exc:
            failures = self._streak.record(seq, ok=False)
            log.info("%s (pid %d): health ping %d failed: %s", self.name, self.pid, seq, exc)
        else:
            failures = self._streak.record(seq, ok=True)
        threshold = self.health.failure_threshold
        if failures == 0:
            self.target.set_problem(PING, None)
        elif failures >= threshold:
            await self.target.restart_unhealthy(
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

    async def _resources(self) -> None:
        loop = asyncio.get_running_loop()
        self.process.sample()  # the CPU baseline
        start = loop.time()
        beat = over = 0
        while True:
            beat += 1
            await asyncio.sleep(max(0.0, start + beat * self.health.interval_s - loop.time()))
            sample = self.process.sample()
            if sample is None:
                return  # the process is gone; the life task sees the exit
            self.last_sample = sample
            problems = exceeded(sample, self.process.spec.limits)
            if not problems:
                over = 0
                self.target.set_problem(RESOURCES, None)
                continue
            over += 1
            text = "; ".join(problems)
            if over >= self.health.failure_threshold:
                await self.target.restart_unhealthy(
                    f"{text}, in {over} samples in a row; stopped to restart it", kill=False
                )
                return
            self.target.set_problem(RESOURCES, text)
