"""The manager's event intake and output: state changes out, command outcomes in.

Out: every state transition is queued (the supervisors report them synchronously) and
published on ``rosey.manager.events.<plugin>`` by one task, in order. In: the router's
``rosey.commands.<plugin>.result|error`` outcomes, fed into each plugin's error rate.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from rosey.bus.client import EventBus, Message, Subscription
from rosey.errors import RoseyError
from rosey.lifecycle.states import State
from rosey.protocol import subjects, wire

__all__ = ["StateEvents", "outcome_of", "subscribe_outcomes"]

log = logging.getLogger("rosey.manager")


class StateEvents:
    """State transitions, queued as they happen and published in order by :meth:`publish`."""

    def __init__(self, bus: EventBus) -> None:
        self.bus = bus
        self._queue: asyncio.Queue[wire.ManagerEvent] = asyncio.Queue()

    def on_transition(self, plugin: str, state: State, previous: State, reason: str) -> None:
        self._queue.put_nowait(
            {
                "plugin": plugin,
                "state": str(state),
                "previous": str(previous),
                "reason": reason,
                "timestamp": time.time(),
            }
        )

    async def publish(self) -> None:
        """Publish queued events until cancelled (a failed publish is logged and skipped)."""
        while True:
            event = await self._queue.get()
            try:
                await self.bus.publish(subjects.manager_events(event["plugin"]), event)
            except RoseyError as exc:
                log.warning("manager: cannot publish state event: %s", exc)
            finally:
                self._queue.task_done()

    async def flush(self, timeout: float) -> bool:
        """Wait until every queued event is published; whether that happened in time."""
        try:
            async with asyncio.timeout(timeout):
                await self._queue.join()
        except TimeoutError:
            return False
        return True


def outcome_of(subject: str) -> tuple[str, bool] | None:
    """``(plugin, ok)`` of an outcome subject ``rosey.commands.<plugin>.result|error``."""
    parts = subject.split(".")
    if len(parts) != 4:
        return None
    return parts[2], parts[3] == "result"


async def subscribe_outcomes(
    bus: EventBus, record: Callable[[str, bool], None]
) -> list[Subscription]:
    """Call ``record(plugin, ok)`` for every command outcome the router publishes."""

    async def on_outcome(msg: Message) -> None:
        outcome = outcome_of(msg.subject)
        if outcome is not None:
            record(*outcome)

    return [
        await bus.subscribe(subject, on_outcome)
        for subject in (subjects.COMMANDS_RESULTS_ALL, subjects.COMMANDS_ERRORS_ALL)
    ]
