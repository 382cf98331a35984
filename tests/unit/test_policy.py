"""Restart policy, backoff and crash window: pure values, checked with tables and hypothesis."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rosey.config import BackoffSettings
from rosey.lifecycle.policy import Backoff, CrashWindow, RestartPolicy, should_restart

# --- restart policy ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "returncode", "stop_requested", "expected"),
    [
        ("on-failure", 0, False, False),
        ("on-failure", 1, False, True),
        ("on-failure", 2, False, True),
        ("on-failure", -9, False, True),  # SIGKILL (e.g. a limit)
        ("on-failure", -15, False, True),  # SIGTERM from outside
        ("on-failure", 1, True, False),
        ("on-failure", -9, True, False),  # killed after the grace period of a stop
        ("always", 0, False, True),
        ("always", 1, False, True),
        ("always", -11, False, True),
        ("always", 0, True, False),
        ("always", 1, True, False),
        ("never", 0, False, False),
        ("never", 1, False, False),
        ("never", -9, False, False),
        ("never", 1, True, False),
    ],
)
def test_should_restart(
    policy: RestartPolicy, returncode: int, stop_requested: bool, expected: bool
) -> None:
    assert should_restart(policy, returncode, stop_requested) is expected


@pytest.mark.parametrize(
    ("policy", "returncode", "stop_requested", "expected"),
    [
        ("on-failure", 0, False, True),  # exited 0 before it was ready: still a failure
        ("on-failure", -9, False, True),  # killed for failed health checks
        ("on-failure", 0, True, False),  # a stop request wins
        ("always", 0, False, True),
        ("never", 0, False, False),
        ("never", -9, False, False),
    ],
)
def test_a_failure_restarts_whatever_the_exit_code(
    policy: RestartPolicy, returncode: int, stop_requested: bool, expected: bool
) -> None:
    assert should_restart(policy, returncode, stop_requested, failed=True) is expected


def test_should_restart_rejects_unknown_policy() -> None:
    with pytest.raises(ValueError, match="unknown restart policy 'sometimes'"):
        should_restart("sometimes", 1, False)  # type: ignore[arg-type]


# --- backoff ----------------------------------------------------------------------------------


def test_backoff_fields_match_the_config_settings() -> None:
    settings = BackoffSettings(initial_s=1, factor=3, max_s=30, jitter=0.1, reset_after_s=5)
    assert Backoff(**settings.model_dump()) == Backoff(1, 3, 30, 0.1, 5)
    assert dataclasses.asdict(Backoff()) == BackoffSettings().model_dump()


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"initial_s": -1}, "initial_s must be >= 0"),
        ({"factor": 0.5}, "factor must be >= 1"),
        ({"max_s": -0.1}, "max_s must be >= 0"),
        ({"jitter": 1.5}, "jitter must be between 0 and 1"),
        ({"jitter": -0.1}, "jitter must be between 0 and 1"),
        ({"reset_after_s": 0}, "reset_after_s must be > 0"),
        ({"initial_s": math.nan}, "initial_s must be >= 0"),
    ],
)
def test_backoff_rejects_bad_settings(kwargs: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        Backoff(**kwargs)


def test_backoff_reports_every_bad_setting_at_once() -> None:
    with pytest.raises(ValueError, match=r"factor must be >= 1.*jitter must be between"):
        Backoff(factor=0, jitter=2)


@pytest.mark.parametrize(
    ("backoff", "attempt", "expected"),
    [
        (Backoff(), 0, 0.5),
        (Backoff(), 1, 1.0),
        (Backoff(), 2, 2.0),
        (Backoff(), 6, 32.0),
        (Backoff(), 7, 60.0),  # 64 capped
        (Backoff(), 10_000, 60.0),  # factor**attempt overflows a float: still the cap
        (Backoff(initial_s=2, factor=1), 10_000, 2.0),
        (Backoff(initial_s=0), 5, 0.0),
        (Backoff(initial_s=10, max_s=3), 0, 3.0),
    ],
)
def test_base_delay(backoff: Backoff, attempt: int, expected: float) -> None:
    assert backoff.base_delay(attempt) == expected


@pytest.mark.parametrize(
    ("rand", "expected"),
    [(0.0, 1.6), (0.25, 1.8), (0.5, 2.0), (0.75, 2.2), (0.999, 2.3992)],
)
def test_delay_applies_jitter_from_rand(rand: float, expected: float) -> None:
    assert Backoff(jitter=0.2).delay(2, rand) == pytest.approx(expected)


@pytest.mark.parametrize(("attempt", "rand"), [(-1, 0.5), (0, -0.1), (0, 1.0), (0, math.nan)])
def test_delay_rejects_bad_arguments(attempt: int, rand: float) -> None:
    with pytest.raises(ValueError, match="must be"):
        Backoff().delay(attempt, rand)


backoffs = st.builds(
    Backoff,
    initial_s=st.floats(0, 100),
    factor=st.floats(1, 10),
    max_s=st.floats(0, 3600),
    jitter=st.floats(0, 1),
    reset_after_s=st.floats(0.001, 3600),
)
rands = st.floats(0, 1, exclude_max=True)


@given(backoffs, st.integers(0, 5000), rands)
def test_delay_stays_within_bounds(backoff: Backoff, attempt: int, rand: float) -> None:
    delay = backoff.delay(attempt, rand)
    assert 0 <= delay <= backoff.max_s * (1 + backoff.jitter) + 1e-9
    base = backoff.base_delay(attempt)
    assert base * (1 - backoff.jitter) - 1e-9 <= delay <= base * (1 + backoff.jitter) + 1e-9


@given(backoffs, st.integers(0, 200), rands)
def test_delay_without_jitter_grows_until_the_cap(
    backoff: Backoff, attempt: int, rand: float
) -> None:
    steady = dataclasses.replace(backoff, jitter=0.0)
    first, second = steady.delay(attempt, rand), steady.delay(attempt + 1, rand)
    assert first <= second <= steady.max_s


@pytest.mark.parametrize(
    ("attempt", "uptime_s", "expected_delay", "expected_next"),
    [
        (0, 0.1, 0.5, 1),  # first crash
        (1, 0.1, 1.0, 2),
        (5, 59.9, 16.0, 6),  # still a quick failure
        (5, 60.0, 0.5, 1),  # ran reset_after_s: the streak starts over
        (9, 3600.0, 0.5, 1),
    ],
)
def test_schedule_resets_after_a_stable_run(
    attempt: int, uptime_s: float, expected_delay: float, expected_next: int
) -> None:
    backoff = Backoff(jitter=0.0, reset_after_s=60.0)
    assert backoff.schedule(attempt, uptime_s, 0.5) == (expected_delay, expected_next)


@pytest.mark.parametrize(("uptime_s", "stable"), [(0.0, False), (59.99, False), (60.0, True)])
def test_is_stable(uptime_s: float, stable: bool) -> None:
    assert Backoff(reset_after_s=60.0).is_stable(uptime_s) is stable


# --- crash window -----------------------------------------------------------------------------


def window_after(
    times: list[float], max_crash_count: int = 3, window_s: float = 600.0
) -> CrashWindow:
    window = CrashWindow(max_crash_count, window_s)
    for now in times:
        window = window.record(now)
    return window


@pytest.mark.parametrize(
    ("times", "max_crash_count", "exceeded"),
    [
        ([], 3, False),
        ([0.0], 3, False),
        ([0.0, 1.0, 2.0], 3, False),  # exactly max: still allowed
        ([0.0, 1.0, 2.0, 3.0], 3, True),  # one more: disable
        ([0.0, 1.0, 2.0, 700.0], 3, False),  # the old ones left the window
        ([0.0, 1.0, 2.0, 599.9], 3, True),  # just within the window
        ([0.0, 1.0, 2.0, 600.0], 3, False),  # 600 s after the first: that one is out
        ([0.0, 0.0, 0.0, 0.0], 3, True),  # same instant counts each time
        ([5.0], 0, True),  # max 0: the first crash disables
        ([0.0, 700.0, 1400.0, 2100.0], 1, False),  # never two within 600 s
        ([0.0, 400.0, 800.0, 900.0], 1, True),
    ],
)
def test_crash_window_exceeded(times: list[float], max_crash_count: int, exceeded: bool) -> None:
    assert window_after(times, max_crash_count).exceeded is exceeded


def test_record_drops_crashes_outside_the_window_and_keeps_the_limits() -> None:
    window = window_after([0.0, 100.0, 650.0, 660.0])
    assert window.timestamps == (100.0, 650.0, 660.0)
    assert (window.max_crash_count, window.window_s) == (3, 600.0)


def test_record_returns_a_new_value() -> None:
    empty = CrashWindow()
    one = empty.record(1.0)
    assert empty.timestamps == ()
    assert one.timestamps == (1.0,)
    with pytest.raises(dataclasses.FrozenInstanceError):
        one.timestamps = ()  # type: ignore[misc]


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (0.5, 1),  # later crashes are not counted before they happen
        (10.0, 2),
        (599.0, 3),
        (600.0, 2),  # the crash at 0.0 is exactly window_s old: out
        (1000.0, 1),
        (1198.9, 1),
        (1199.0, 0),
    ],
)
def test_count(now: float, expected: int) -> None:
    window = CrashWindow(10, 600.0, (0.0, 1.0, 599.0))
    assert window.count(now) == expected


def test_cleared_empties_and_keeps_limits() -> None:
    window = window_after([0.0, 1.0, 2.0, 3.0])
    assert window.exceeded
    fresh = window.cleared()
    assert fresh == CrashWindow(3, 600.0)
    assert not fresh.exceeded


def test_crash_loop_always_ends_disabled() -> None:
    """Regression: the original spec reset the crash counter at every start.

    A plugin that crashes a second after each start, restarted with backoff, must be found
    exceeding the window; no start in between resets it (only ``enable`` does).
    """
    backoff = Backoff(jitter=0.0)
    window = CrashWindow(max_crash_count=3, window_s=600.0)
    now, attempt, crashes = 0.0, 0, 0
    while not window.exceeded:
        now += 1.0  # runs one second, then crashes
        window = window.record(now)
        crashes += 1
        delay, attempt = backoff.schedule(attempt, 1.0, 0.5)
        now += delay
        assert crashes <= 4, "a crash loop must be detected"
    assert crashes == 4


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"max_crash_count": -1}, "max_crash_count must be >= 0"),
        ({"window_s": 0}, "window_s must be > 0"),
        ({"window_s": math.nan}, "window_s must be > 0"),
        ({"timestamps": (5.0, 1.0)}, "timestamps must be in time order"),
    ],
)
def test_crash_window_rejects_bad_values(kwargs: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        CrashWindow(**kwargs)


def test_record_rejects_time_going_backwards() -> None:
    with pytest.raises(ValueError, match="before the previous one"):
        CrashWindow().record(10.0).record(9.0)


def test_exceeded_only_counts_the_window_of_the_last_crash() -> None:
    # Built directly with stale entries: only those within window_s of the last one count.
    assert not CrashWindow(2, 10.0, (0.0, 1.0, 50.0)).exceeded
    assert CrashWindow(2, 10.0, (45.0, 49.0, 50.0)).exceeded


@given(
    st.lists(st.floats(0, 5000, allow_nan=False), max_size=20).map(sorted),
    st.integers(0, 6),
    st.floats(0.5, 2000),
)
def test_exceeded_iff_more_than_max_within_window(
    times: list[float], max_crash_count: int, window_s: float
) -> None:
    window = window_after(times, max_crash_count, window_s)
    if not times:
        assert not window.exceeded
        return
    last = times[-1]
    recent = [t for t in times if last - t < window_s]
    assert window.exceeded is (len(recent) > max_crash_count)
    assert window.timestamps == tuple(recent)
