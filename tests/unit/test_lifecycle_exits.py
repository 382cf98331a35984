"""``rosey.lifecycle.exits``: how a run's end is read, and the state sets derived from the table.

Issue 11 moved this out of the supervisor (``_after_exit``/``_end_marker``/the backoff's words);
these tables pin the words and events it had there.
"""

from __future__ import annotations

import pytest

from rosey.lifecycle.exits import ExitFacts, ExitVerdict, after_exit, end_marker, restart_reason
from rosey.lifecycle.states import (
    AT_REST,
    STOPPABLE,
    TRANSITIONS,
    UP,
    Event,
    State,
    accepts,
)

START_ERROR = "plugin 'dice' did not become ready within 1 s\n  | last line"


@pytest.mark.parametrize(
    ("facts", "verdict"),
    [
        (
            ExitFacts(1, start_error=START_ERROR),
            ExitVerdict(
                Event.START_FAILED,
                "plugin 'dice' did not become ready within 1 s",
                START_ERROR,
                error_wants_tail=False,
                failed=True,
                marker="failed to start (exit 1)",
            ),
        ),
        (
            ExitFacts(None, start_error="cannot spawn: no such file", limit_reason="OOM"),
            ExitVerdict(
                Event.START_FAILED,
                "cannot spawn: no such file: OOM",
                "cannot spawn: no such file: OOM",
                error_wants_tail=False,
                failed=True,
                marker="failed to start",
            ),
        ),
        (
            ExitFacts(-9, kill_reason="3 health checks failed"),
            ExitVerdict(
                Event.CRASHED,
                "crashed (3 health checks failed)",
                "3 health checks failed",
                error_wants_tail=True,
                failed=True,
                marker="crashed (3 health checks failed)",
            ),
        ),
        (
            ExitFacts(0),
            ExitVerdict(
                Event.EXITED_OK,
                "exited (exit 0)",
                None,
                error_wants_tail=False,
                failed=False,
                marker="exited (exit 0)",
            ),
        ),
        (
            ExitFacts(2),
            ExitVerdict(
                Event.CRASHED,
                "crashed (exit 2)",
                "crashed (exit 2)",
                error_wants_tail=True,
                failed=True,
                marker="crashed (exit 2)",
            ),
        ),
        (
            ExitFacts(-9, limit_reason="out of memory (memory_mb 64)"),
            ExitVerdict(
                Event.CRASHED,
                "crashed (signal 9 (SIGKILL)): out of memory (memory_mb 64)",
                "crashed (signal 9 (SIGKILL)): out of memory (memory_mb 64)",
                error_wants_tail=True,
                failed=True,
                marker="crashed (signal 9 (SIGKILL))",
            ),
        ),
    ],
)
def test_after_exit(facts: ExitFacts, verdict: ExitVerdict) -> None:
    assert after_exit(facts) == verdict
    assert end_marker(facts) == verdict.marker


def test_an_exit_without_a_code_is_a_bug() -> None:
    with pytest.raises(ValueError, match="return code"):
        after_exit(ExitFacts(None))


@pytest.mark.parametrize(
    ("facts", "count", "reason"),
    [
        (ExitFacts(1, start_error="x"), 1, "restart 1 after its start failed"),
        (ExitFacts(-9, kill_reason="hung"), 2, "restart 2 after a failed health check"),
        (ExitFacts(3), 3, "restart 3 after exit 3"),
        (ExitFacts(0), 4, "restart 4 after exit 0"),
    ],
)
def test_restart_reason(facts: ExitFacts, count: int, reason: str) -> None:
    assert restart_reason(facts, count) == reason


def test_state_sets_derived_from_the_table() -> None:
    """The supervisor used to re-encode these as tuples; they now follow the table."""
    assert {State.RUNNING, State.UNHEALTHY} == UP
    assert {State.STARTING, State.RUNNING, State.UNHEALTHY} == STOPPABLE
    assert {State.STOPPED, State.CRASHED, State.DISABLED} == AT_REST
    assert all(TRANSITIONS[(s, Event.STOP_REQUESTED)] is State.STOPPING for s in STOPPABLE)
    assert accepts(State.CRASHED, Event.DEPENDENCY_FAILED)
    assert not accepts(State.DISABLED, Event.DEPENDENCY_FAILED)
