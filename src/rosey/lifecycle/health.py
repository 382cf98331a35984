"""Health verdicts without I/O: ping streaks, the command error rate, and when to beat.

The manager's health monitor measures (pings over NATS, the router's command outcomes) and
asks these what the numbers mean (resource samples are judged by ``rosey.sandbox.stats``);
``BeatSchedule`` says which plugins' checks are due on the manager's one health timer.
Times are monotonic seconds passed in by the caller; nothing here reads a clock, sleeps or
talks to anyone, so every verdict is a table row.
"""

from __future__ import annotations

import collections
import heapq
import itertools
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["BeatSchedule", "CommandWindow", "ErrorRatePolicy", "PingStreak"]

K = TypeVar("K", bound=Hashable)


class PingStreak:
    """Consecutive failed health pings, counted by sequence number.

    Pings are sent on a fixed beat and may complete out of order (a ping that times out after
    ``timeout_s`` can finish after the next one was sent), so a failure counts only if no later
    ping has succeeded: ``failures`` is the number of failed pings newer than the newest success.
    """

    __slots__ = ("_failed", "_last_ok")

    def __init__(self) -> None:
        self._last_ok = 0
        self._failed: set[int] = set()

    @property
    def failures(self) -> int:
        return len(self._failed)

    def record(self, seq: int, ok: bool) -> int:
        """Record the outcome of ping number ``seq`` (1, 2, ...); the consecutive failures."""
        if seq < 1:
            raise ValueError(f"ping sequence numbers start at 1 (got {seq})")
        if ok:
            self._last_ok = max(self._last_ok, seq)
            self._failed = {s for s in self._failed if s > self._last_ok}
        elif seq > self._last_ok:
            self._failed.add(seq)
        return self.failures


@dataclass(frozen=True)
class ErrorRatePolicy:
    """When a plugin's commands fail too often: more than ``threshold`` of them, over the
    last ``window_s`` seconds, once at least ``min_commands`` were run (so a single failure of
    a single command does not make a plugin unhealthy)."""

    window_s: float = 60.0
    threshold: float = 0.5
    min_commands: int = 5

    def __post_init__(self) -> None:
        if not self.window_s > 0:
            raise ValueError(f"window_s must be > 0 (got {self.window_s!r})")
        if not 0 <= self.threshold < 1:
            raise ValueError(f"threshold must be in [0, 1) (got {self.threshold!r})")
        if self.min_commands < 1:
            raise ValueError(f"min_commands must be >= 1 (got {self.min_commands!r})")

    def problem(self, errors: int, total: int) -> str | None:
        """The reason the plugin is unhealthy, in words, or None when the rate is fine."""
        if total < self.min_commands or total == 0 or errors / total <= self.threshold:
            return None
        return (
            f"error rate {errors / total:.0%} over the last {self.window_s:g} s "
            f"({errors} of {total} commands failed; the limit is {self.threshold:.0%})"
        )


class CommandWindow:
    """The outcomes of a plugin's recent commands (from ``rosey.commands.<p>.result|error``).

    No I/O and no clock: the caller passes monotonic ``now``. Outcomes older than ``window_s``
    are dropped as time passes; the counts are kept incrementally so recording is O(1).
    """

    __slots__ = ("_errors", "_outcomes", "window_s")

    def __init__(self, window_s: float) -> None:
        if not window_s > 0:
            raise ValueError(f"window_s must be > 0 (got {window_s!r})")
        self.window_s = window_s
        self._outcomes: collections.deque[tuple[float, bool]] = collections.deque()
        self._errors = 0

    def record(self, now: float, ok: bool) -> None:
        """One command finished at ``now``: ``ok`` False when it failed."""
        if self._outcomes and now < self._outcomes[-1][0]:
            now = self._outcomes[-1][0]  # keep time order; outcomes arrive, they never go back
        self._outcomes.append((now, ok))
        if not ok:
            self._errors += 1
        self._expire(now)

    def counts(self, now: float) -> tuple[int, int]:
        """``(errors, total)`` within the window that ends at ``now``."""
        self._expire(now)
        return self._errors, len(self._outcomes)

    def rate(self, now: float) -> float:
        """Errors / commands within the window; 0.0 when there were none."""
        errors, total = self.counts(now)
        return errors / total if total else 0.0

    def clear(self) -> None:
        self._outcomes.clear()
        self._errors = 0

    def _expire(self, now: float) -> None:
        while self._outcomes and now - self._outcomes[0][0] >= self.window_s:
            _, ok = self._outcomes.popleft()
            if not ok:
                self._errors -= 1


class BeatSchedule(Generic[K]):
    """When each member's next health beat is due, on one shared timer.

    A member added at ``now`` with ``interval`` beats every ``interval`` from its first beat,
    which is ``now + interval``, or earlier (by at most ``first_share`` of the interval) when
    another member of the same interval beats then: it joins that member's phase, so plugins
    started around the same time end up beating together. No beat is ever later than
    ``now + k × interval`` (k = 1, 2, ...). A beat may also run up to ``window(interval)`` early
    (a share of the interval, capped) so that members whose beats are close share one wake-up
    of the timer. The timer sleeps until ``next_wake()`` (the earliest beat, on time) and then
    takes every member ``due(now)`` within its window. A timer that fell behind by whole
    intervals skips them (no burst of beats to catch up).
    """

    def __init__(self, share: float = 0.1, cap_s: float = 1.0, first_share: float = 0.5) -> None:
        if not 0 <= share < 1 or cap_s < 0 or not 0 <= first_share < 1:
            raise ValueError(
                f"the early window is a share in [0, 1) and a cap >= 0 ({share}, {cap_s}), "
                f"the first beat's a share in [0, 1) ({first_share})"
            )
        self.share = share
        self.cap_s = cap_s
        self.first_share = first_share
        self._heap: list[tuple[float, int, K]] = []
        self._next: dict[K, tuple[float, float]] = {}  # member → (its next beat, its interval)
        self._order = itertools.count()

    def __len__(self) -> int:
        return len(self._next)

    def window(self, interval: float) -> float:
        """How early a beat of this interval may run."""
        return min(self.share * interval, self.cap_s)

    def add(self, member: K, interval: float, now: float) -> None:
        """``member`` beats every ``interval`` seconds from ``now`` (replacing its schedule)."""
        if not interval > 0:
            raise ValueError(f"a health interval must be > 0 (got {interval!r})")
        self._next.pop(member, None)
        latest = now + interval
        earliest = latest - self.first_share * interval
        phases = [w for w, i in self._next.values() if i == interval and earliest <= w <= latest]
        self._push(member, max(phases, default=latest), interval)

    def remove(self, member: K) -> None:
        self._next.pop(member, None)  # its heap entry is dropped when it comes up

    def next_wake(self) -> float | None:
        """When the timer must wake next (the earliest beat, on time); None: no member."""
        while self._heap:
            when, _, member = self._heap[0]
            if self._next.get(member, (None,))[0] == when:
                return when
            heapq.heappop(self._heap)  # removed or rescheduled since
        return None

    def due(self, now: float) -> list[K]:
        """The members whose beat is due by ``now`` (within their early window), in order of
        their beats; each is rescheduled one interval later."""
        found: list[K] = []
        while self.next_wake() is not None:
            when, _, member = self._heap[0]
            interval = self._next[member][1]
            if when - self.window(interval) > now:
                break
            heapq.heappop(self._heap)
            following = when + interval
            while following <= now:
                following += interval
            self._push(member, following, interval)
            found.append(member)
        return found

    def _push(self, member: K, when: float, interval: float) -> None:
        self._next[member] = (when, interval)
        heapq.heappush(self._heap, (when, next(self._order), member))
