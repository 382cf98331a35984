"""Server-sent events for ``GET /api/events``: one per state change and security violation.

The face subscribes to ``rosey.manager.events.>`` and ``rosey.security.violation`` and keeps
the last ``capacity`` events in an ``EventLog``, each with an id ``<boot>-<seq>``. A client
that reconnects with ``Last-Event-ID`` gets every event after that id still in the buffer; if
the id is from another run of the bot (another ``boot``) or has fallen out of the buffer, it
gets a ``gap`` event first (refetch the state) and then what the buffer holds. The body of
each event is the bus message's body, unchanged.

``EventLog`` and ``frame`` are pure (unit-tested); ``Broadcaster`` is the thin async shell that
hands new events to the open streams.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

#: Events kept for clients that reconnect (a few minutes of a busy bot).
DEFAULT_CAPACITY = 1000
#: Events queued for one slow client before it is dropped (it reconnects and resumes).
CLIENT_QUEUE = 1000

STATE = "state"
VIOLATION = "violation"
GAP = "gap"


@dataclass(frozen=True)
class Event:
    """One event as sent: ``id``, ``kind`` (the SSE ``event:`` field) and the bus body."""

    id: str
    kind: str
    body: Any


class EventLog:
    """The last ``capacity`` events, numbered from 1 within one ``boot`` (a random word)."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY, boot: str | None = None) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.boot = boot or secrets.token_hex(4)
        self._events: deque[tuple[int, Event]] = deque(maxlen=capacity)
        self._seq = 0

    @property
    def last_id(self) -> str:
        return f"{self.boot}-{self._seq}"

    def append(self, kind: str, body: Any) -> Event:
        self._seq += 1
        event = Event(f"{self.boot}-{self._seq}", kind, body)
        self._events.append((self._seq, event))
        return event

    def since(self, last_id: str | None) -> tuple[bool, list[Event]]:
        """``(gap, events)``: what a client that last saw ``last_id`` missed.

        ``gap`` is True when the client may have missed more than ``events`` (an id of another
        run, an unreadable id, or one older than the buffer). No id: nothing missed (a new
        client starts from the present).
        """
        if last_id is None or last_id == "":
            return False, []
        boot, _, number = last_id.rpartition("-")
        if boot != self.boot or not number.isdigit() or len(number) > 18:
            return True, [event for _, event in self._events]
        seen = int(number)
        if seen >= self._seq:
            return seen > self._seq, []  # an id from the future is not ours: a gap
        oldest = self._events[0][0] if self._events else self._seq + 1
        gap = seen < oldest - 1
        return gap, [event for seq, event in self._events if seq > seen]


def frame(event: Event) -> bytes:
    """One event in the SSE wire format (``id``, ``event``, one ``data`` line of JSON)."""
    # json.dumps escapes newlines inside strings, so the body is one line whatever it holds.
    data = json.dumps(event.body, separators=(",", ":"), ensure_ascii=False, default=str)
    return f"id: {event.id}\nevent: {event.kind}\ndata: {data}\n\n".encode()


def gap_frame(log: EventLog) -> bytes:
    """Tells a client it may have missed events: refetch the state (carries the current id)."""
    return frame(Event(log.last_id, GAP, {"last_id": log.last_id}))


class Broadcaster:
    """The event log and the queues of the open streams; events go to every queue."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.log = EventLog(capacity)
        self._clients: set[asyncio.Queue[Event | None]] = set()

    @property
    def clients(self) -> int:
        return len(self._clients)

    def publish(self, kind: str, body: Any) -> Event:
        event = self.log.append(kind, body)
        for queue in list(self._clients):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                # A client that does not read is dropped, not waited for: it resumes from the
                # log when it reconnects, and nobody else is held up.
                self._clients.discard(queue)
                _drain_and_close(queue)
        return event

    def attach(self) -> asyncio.Queue[Event | None]:
        queue: asyncio.Queue[Event | None] = asyncio.Queue(CLIENT_QUEUE)
        self._clients.add(queue)
        return queue

    def detach(self, queue: asyncio.Queue[Event | None]) -> None:
        self._clients.discard(queue)

    def close_all(self) -> None:
        """End every open stream (``None`` in its queue), e.g. when the face stops."""
        for queue in list(self._clients):
            _drain_and_close(queue)
        self._clients.clear()


def _drain_and_close(queue: asyncio.Queue[Event | None]) -> None:
    for _ in _drained(queue):
        pass
    queue.put_nowait(None)


def _drained(queue: asyncio.Queue[Event | None]) -> Iterator[Event | None]:
    while not queue.empty():
        yield queue.get_nowait()
