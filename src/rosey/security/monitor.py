"""Violation monitor: the broker's refusals → ``rosey.security.violation``, counts, policy.

Fed line by line from the embedded server's log (``EmbeddedServer.on_line``), it publishes each
refusal a plugin's identity caused, keeps per-plugin counts for status, logs it for the
operator, and asks the manager to disable a plugin that crosses the configured limit.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from rosey.bus.client import EventBus
from rosey.errors import RoseyError
from rosey.plugins.grant_needed import Operation, grant_needed
from rosey.protocol import subjects, wire
from rosey.security.violations import Violation, ViolationPolicy, parse_violation

log = logging.getLogger("rosey.security")

#: ``disable(plugin, reason)``: how the monitor asks the manager to disable a plugin.
Disable = Callable[[str, str], Awaitable[object]]


def explain(violation: Violation) -> str:
    """The refusal and which grant would allow it (``grant_needed``), in an author's words:
    ``the broker refused to publish 'x': it needs the grant `chat.send` in plugin.yaml ...``."""
    if violation.kind not in ("publish", "subscribe"):
        return violation.detail
    operation: Operation = "publish to" if violation.kind == "publish" else "subscribe to"
    grant = grant_needed(violation.plugin, operation, violation.subject)
    if grant is None:
        return f"{violation.detail}; no grant allows that"
    needs = f"it needs the grant `{grant}` in plugin.yaml (permissions: [{grant}])"
    return f"{violation.detail}: {needs}"


class ViolationMonitor:
    def __init__(self, policy: ViolationPolicy) -> None:
        self.policy = policy
        self._queue: asyncio.Queue[Violation] = asyncio.Queue()

    def feed(self, line: str) -> None:
        """One server log line (sync: called from the server's log pump)."""
        violation = parse_violation(line)
        if violation is not None:
            self._queue.put_nowait(violation)

    def report(self, violation: Violation) -> None:
        """A violation the core itself caught (e.g. a connector's forged platform/channel):
        reported, counted and acted on like the broker's."""
        self._queue.put_nowait(violation)

    def count(self, plugin: str) -> int:
        return self.policy.totals.get(plugin, 0)

    async def run(
        self, bus: EventBus, disable: Disable, counted: Callable[[str, str], None] | None = None
    ) -> None:
        """Report violations until cancelled."""
        while True:
            violation = await self._queue.get()
            hint = explain(violation)
            log.warning("security: plugin %s: %s", violation.plugin, hint)
            body: wire.SecurityViolation = {
                "plugin": violation.plugin,
                "kind": violation.kind,
                "subject": violation.subject,
                "detail": violation.detail,
                "timestamp": time.time(),
            }
            try:
                await bus.publish(subjects.SECURITY_VIOLATION, body)
            except RoseyError as exc:
                log.warning("security: cannot publish a violation report: %s", exc)
            crossed = self.policy.record(violation.plugin, time.monotonic())
            if counted is not None:
                counted(violation.plugin, hint)
            if crossed:
                # Counting starts afresh: after an operator enables it again, it gets a new window.
                self.policy.forget(violation.plugin)
                reason = (
                    f"disabled after more than {self.policy.max_violations} permission violations "
                    f"within {self.policy.window_s:g} s (last: {violation.detail})"
                )
                log.error("security: plugin %s %s", violation.plugin, reason)
                try:
                    await disable(violation.plugin, reason)
                except RoseyError as exc:
                    log.error("security: could not disable %s: %s", violation.plugin, exc)
