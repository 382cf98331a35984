"""Restart decisions as pure values: restart policy, backoff delay, crash window.

The supervisor asks, these answer; nothing here sleeps, draws random numbers or reads a clock.
Times are monotonic seconds (``time.monotonic()``) passed in by the caller, and the jitter of
the backoff comes from a number in [0, 1) the caller draws, so every answer is reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import pairwise
from typing import get_args

from rosey.protocol.manifest import RestartPolicy

__all__ = ["Backoff", "CrashWindow", "RestartPolicy", "should_restart"]

# ``restart_policy`` of a manifest: defined once, with the manifest (the contract).

_POLICIES: tuple[str, ...] = get_args(RestartPolicy)


def should_restart(
    policy: RestartPolicy, returncode: int, stop_requested: bool, *, failed: bool = False
) -> bool:
    """Whether a plugin whose process just ended must be started again (after the backoff).

    A stop the manager asked for never restarts, whatever the exit code (SIGKILL after the
    grace period included). ``on-failure`` restarts on a non-zero exit or death by a signal
    (negative ``returncode``), not on exit 0; ``always`` restarts on any exit; ``never`` on none.
    ``failed`` marks an end that is a failure whatever the exit code: the plugin never became
    ready, or the manager killed it because its health checks failed; ``on-failure`` restarts
    it then. The crash window is checked separately: a crash loop ends disabled whatever this
    says.
    """
    if policy not in _POLICIES:
        raise ValueError(f"unknown restart policy {policy!r}; expected one of {_POLICIES}")
    if stop_requested or policy == "never":
        return False
    return policy == "always" or failed or returncode != 0


@dataclass(frozen=True)
class Backoff:
    """Exponential restart delay: ``initial_s * factor**attempt``, capped at ``max_s``, ± jitter.

    ``attempt`` counts the restarts in the current streak of failures, starting at 0. A plugin
    that ran at least ``reset_after_s`` before it ended was stable: its streak starts over.
    Field names match ``rosey.config.BackoffSettings``: ``Backoff(**settings.model_dump())``.
    """

    initial_s: float = 0.5
    factor: float = 2.0
    max_s: float = 60.0
    #: Share of the delay added or taken away at random: 0.2 gives ±20 %.
    jitter: float = 0.2
    reset_after_s: float = 60.0

    def __post_init__(self) -> None:
        problems = [
            f"{name} must be {rule} (got {value!r})"
            for name, value, ok, rule in (
                ("initial_s", self.initial_s, self.initial_s >= 0, ">= 0"),
                ("factor", self.factor, self.factor >= 1, ">= 1"),
                ("max_s", self.max_s, self.max_s >= 0, ">= 0"),
                ("jitter", self.jitter, 0 <= self.jitter <= 1, "between 0 and 1"),
                ("reset_after_s", self.reset_after_s, self.reset_after_s > 0, "> 0"),
            )
            if not ok
        ]
        if problems:
            raise ValueError("backoff: " + "; ".join(problems))

    def base_delay(self, attempt: int) -> float:
        """The delay without jitter: exponential in ``attempt``, never above ``max_s``."""
        if attempt < 0:
            raise ValueError(f"attempt must be >= 0 (got {attempt})")
        try:
            delay = self.initial_s * self.factor**attempt
        except OverflowError:  # factor**attempt beyond float range: far past the cap
            return self.max_s
        return min(self.max_s, delay)

    def delay(self, attempt: int, rand: float) -> float:
        """Seconds to wait before restart number ``attempt`` of a streak.

        ``rand`` in [0, 1) places the delay in ``base * [1 - jitter, 1 + jitter)``: 0.5 gives
        the base delay exactly. The result lies in ``[0, max_s * (1 + jitter)]``.
        """
        if not 0 <= rand < 1:
            raise ValueError(f"rand must be in [0, 1) (got {rand!r})")
        base = self.base_delay(attempt)
        return base * (1 + self.jitter * (2 * rand - 1))

    def is_stable(self, uptime_s: float) -> bool:
        """Whether a run this long resets the streak (and so the delay) to the first attempt."""
        return uptime_s >= self.reset_after_s

    def schedule(self, attempt: int, uptime_s: float, rand: float) -> tuple[float, int]:
        """``(delay, next_attempt)`` for a restart after a run of ``uptime_s`` seconds.

        ``attempt`` is the counter the caller stored after the previous restart (0 at first);
        it is reset first when the run was stable. Store ``next_attempt`` for the next time.
        """
        if self.is_stable(uptime_s):
            attempt = 0
        return self.delay(attempt, rand), attempt + 1


@dataclass(frozen=True)
class CrashWindow:
    """The recent crashes of one plugin; ``exceeded`` means it must be disabled.

    ``exceeded`` is true when MORE than ``max_crash_count`` crashes happened within
    ``window_s`` seconds up to the last one recorded: with 3, the fourth crash within ten
    minutes disables the plugin. Starts (by the operator or by a restart) never reset it: a
    plugin that crashes at every start must end disabled. Only ``enable`` does, via
    :meth:`cleared`. Record ``start_failed`` like a crash, so a plugin that never gets ready
    ends disabled too.
    """

    max_crash_count: int = 3
    window_s: float = 600.0
    #: Crash times (monotonic seconds), oldest first, only those still within the window.
    timestamps: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.max_crash_count < 0:
            raise ValueError(f"max_crash_count must be >= 0 (got {self.max_crash_count})")
        if not self.window_s > 0:
            raise ValueError(f"window_s must be > 0 (got {self.window_s!r})")
        if any(a > b for a, b in pairwise(self.timestamps)):
            raise ValueError(f"timestamps must be in time order (got {self.timestamps!r})")

    def record(self, now: float) -> CrashWindow:
        """A window with a crash at ``now`` added and crashes older than ``window_s`` dropped."""
        if self.timestamps and now < self.timestamps[-1]:
            raise ValueError(
                f"crash time {now!r} is before the previous one {self.timestamps[-1]!r}; "
                "pass monotonic times"
            )
        kept = tuple(t for t in self.timestamps if now - t < self.window_s)
        return replace(self, timestamps=(*kept, now))

    def count(self, now: float) -> int:
        """How many recorded crashes are within ``window_s`` before ``now``."""
        return sum(1 for t in self.timestamps if 0 <= now - t < self.window_s)

    @property
    def exceeded(self) -> bool:
        """More than ``max_crash_count`` crashes within the window ending at the last one."""
        if not self.timestamps:
            return False
        return self.count(self.timestamps[-1]) > self.max_crash_count

    def cleared(self) -> CrashWindow:
        """The same limits with no crashes: what ``enable`` starts from."""
        return replace(self, timestamps=())
