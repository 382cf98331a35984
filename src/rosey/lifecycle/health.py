"""Health verdicts without I/O: ping streaks and the command error rate.

The manager's health monitor measures (pings over NATS, the router's command outcomes) and
asks these what the numbers mean (resource samples are judged by ``rosey.sandbox.stats``).
Times are monotonic seconds passed in by the caller; nothing here reads a clock, sleeps or
talks to anyone, so every verdict is a table row.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

__all__ = ["CommandWindow", "ErrorRatePolicy", "PingStreak"]


class PingStreak:
    """Consecutive failed health pings, counted by sequence number.

    Pings are sent on a fixed beat and may complete out of order (a ping that times out after
    ``timeout_s`` can finish after the next one was sent), so a failure counts only if no later
    ping has succeeded: ``failures`` is the number of failed pings newer than the newest success.
    """

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
