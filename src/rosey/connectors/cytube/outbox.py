"""The connector's outgoing lines, from the bus to the server's echo (pure, no I/O).

A reply (``rosey.platform.cytube.send``) is split into chat lines (``text.split_reply``) and
queued, bounded: a reply that does not fit is dropped whole and counted. The client takes one
line at a time when the pacer allows (``take``) and emits it; the line then stays *in flight*
until the server answers. The server answers each line of one socket in the order it was sent:
an echo (``chatMsg``/``pm`` from ourselves: ``delivered``), a refusal (``cooldown``, ``noflood``,
``spamFiltered``: ``refused``, and the line goes out again first, after the wait the server
names, at most ``max_resends`` times), or, for a PM, ``errorMsg`` "PM failed" (``answered``). A
connection that ends takes no line with it: what was in flight goes out again after the
reconnect. Nothing is lost without being counted.
"""

from __future__ import annotations

import collections
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rosey.connectors.cytube.pacer import Pacer
from rosey.connectors.cytube.text import split_reply

__all__ = ["CONFIRM_TIMEOUT", "Counters", "Line", "Outbox"]

#: Seconds a line may stay unanswered before it is counted as ``unconfirmed`` and forgotten.
CONFIRM_TIMEOUT = 10.0


@dataclass
class Counters:
    """Lines and connections, for status and metrics."""

    sent: int = 0  # lines emitted (resends included)
    delivered: int = 0  # lines the server echoed back
    resent: int = 0  # lines sent again after cooldown/noflood or a lost connection
    dropped: int = 0  # lines refused because the queue was full (or not for this channel)
    given_up: int = 0  # lines refused by the server more than max_resends times
    unconfirmed: int = 0  # lines the server never answered
    pm_failed: int = 0  # PMs to someone not in the channel
    cooldowns: int = 0
    reconnects: int = 0
    kicks: int = 0
    events_dropped: int = 0


@dataclass
class Line:
    """One chat line to send: to the channel, or a PM to ``to``."""

    text: str
    to: str | None
    in_reply_to: str | None
    attempts: int = 0
    sent_at: float = 0.0

    @property
    def event(self) -> tuple[str, dict[str, Any]]:
        """The socket.io event and payload that send it."""
        if self.to is None:
            return "chatMsg", {"msg": self.text, "meta": {}}
        return "pm", {"to": self.to, "msg": self.text, "meta": {}}


class Outbox:
    """Queued, in-flight and retried lines; ``now`` is the caller's monotonic clock (s)."""

    def __init__(
        self,
        pacer: Pacer,
        counters: Counters,
        *,
        channel: str,
        max_length: int = 320,
        queue_size: int = 500,
        max_resends: int = 5,
    ) -> None:
        self.pacer = pacer
        self.counters = counters
        self.channel = channel.lower()
        self.max_length = max_length
        self.queue_size = queue_size
        self.max_resends = max_resends
        self._queue: collections.deque[Line] = collections.deque()
        self._retry: collections.deque[Line] = collections.deque()
        self._in_flight: collections.deque[Line] = collections.deque()

    @property
    def queued(self) -> int:
        return len(self._queue) + len(self._retry)

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def enqueue(self, request: Mapping[str, Any]) -> bool:
        """Queue a send body ``{channel, text, in_reply_to, to?}``; False if it was dropped."""
        text, to = request.get("text"), request.get("to")
        channel = request.get("channel", self.channel)
        if not isinstance(text, str) or (to is not None and not isinstance(to, str)):
            return False
        if not isinstance(channel, str) or channel.lower() != self.channel:
            self.counters.dropped += 1
            return False
        reply_to = request.get("in_reply_to")
        lines = split_reply(text, limit=self.max_length)
        if self.queued + len(lines) > self.queue_size:
            self.counters.dropped += len(lines)
            return False
        for line in lines:
            self._queue.append(Line(line, to, reply_to if isinstance(reply_to, str) else None))
        return True

    def has_lines(self) -> bool:
        return bool(self._retry or self._queue)

    def delay(self, now: float) -> float:
        """Seconds until the next line may go (the pacer's answer)."""
        return self.pacer.delay(now)

    def take(self, now: float) -> Line:
        """The next line to emit now (lines sent again come first); it is in flight from now."""
        self._forget_unanswered(now)
        line = self._retry.popleft() if self._retry else self._queue.popleft()
        line.sent_at = now
        self.pacer.sent(now)
        self._in_flight.append(line)
        self.counters.sent += 1
        return line

    def unsent(self, line: Line) -> None:
        """The emit of ``line`` failed (no connection): it goes first after the reconnect."""
        if line in self._in_flight:
            self._in_flight.remove(line)
        self.counters.sent -= 1
        self._retry.appendleft(line)

    def answered(self, *, pm: bool) -> Line | None:
        """The server answered the oldest line in flight of that kind (echo or PM failure)."""
        for index, line in enumerate(self._in_flight):
            if (line.to is not None) == pm:
                del self._in_flight[index]
                return line
        return None

    def refused(self, now: float, cooldown_ms: object, *, escalate: bool = False) -> Line | None:
        """The server dropped our oldest line in flight: wait as it says, then send it again.

        ``escalate`` (muted, filtered): waiting the flood interval would not help, so the wait
        doubles with each attempt (1 s, 2 s, 4 s... at most 30 s). Returns the line if it was
        given up (refused more than ``max_resends`` times).
        """
        line = self._in_flight.popleft() if self._in_flight else None
        attempts = line.attempts if line is not None else 0
        if escalate:
            cooldown_ms = min(30_000.0, 1000.0 * 2.0**attempts)
        self.pacer.refused(now, cooldown_ms)
        if line is None:
            return None
        line.attempts += 1
        if line.attempts > self.max_resends:
            self.counters.given_up += 1
            return line
        self._retry.append(line)
        self.counters.resent += 1
        return None

    def requeue_in_flight(self) -> None:
        """The connection ended: lines not answered yet go out again after the reconnect.

        Some of them may have reached the channel: a repeated line is better than a lost one.
        """
        if self._in_flight:
            self.counters.resent += len(self._in_flight)
            self._retry.extendleft(reversed(self._in_flight))
            self._in_flight.clear()

    def _forget_unanswered(self, now: float) -> None:
        while self._in_flight and now - self._in_flight[0].sent_at > CONFIRM_TIMEOUT:
            self._in_flight.popleft()
            self.counters.unconfirmed += 1
