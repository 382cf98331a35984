"""The standby pool's bookkeeping (``rosey.sandbox.standby.StandbyPool``): what each event calls
for, as a table; the refill backoff; how the fork server tells a standby request."""

from __future__ import annotations

import pytest

from rosey.sandbox.forkserver import is_standby_request
from rosey.sandbox.standby import (
    RETRY_FIRST,
    RETRY_MAX,
    Action,
    Event,
    Phase,
    StandbyPool,
    refill_delay,
)

E, F, R = Phase.EMPTY, Phase.FILLING, Phase.READY
FILL, DISCARD = Action.FILL, Action.DISCARD


@pytest.mark.parametrize(
    ("phase", "event", "after", "actions"),
    [
        # The fork server is up: fill, unless one is there or coming.
        (E, Event.WANTED, F, [FILL]),
        (F, Event.WANTED, F, []),
        (R, Event.WANTED, R, []),
        # A fill ends.
        (F, Event.FILLED, R, []),
        (E, Event.FILLED, E, [DISCARD]),  # dropped meanwhile (its server was lost)
        (F, Event.FAILED, F, [FILL]),  # again (after the backoff)
        (E, Event.FAILED, E, []),
        # A launch takes it: refill.
        (R, Event.TAKEN, F, [FILL]),
        (E, Event.TAKEN, E, []),
        # It died on its own: replaced, never used.
        (R, Event.DIED, F, [DISCARD, FILL]),
        (F, Event.DIED, F, []),  # not ours (a stale report)
        # The server is gone: what it made goes with it; nothing until it is back.
        (R, Event.LOST, E, [DISCARD]),
        (F, Event.LOST, E, [DISCARD]),
        (E, Event.LOST, E, []),
        # The bot stops.
        (R, Event.CLOSED, E, [DISCARD]),
        (F, Event.CLOSED, E, [DISCARD]),
        (E, Event.CLOSED, E, []),
    ],
)
def test_each_event_calls_for(
    phase: Phase, event: Event, after: Phase, actions: list[Action]
) -> None:
    pool = StandbyPool(phase=phase)
    assert pool.on(event) == actions
    assert pool.phase is after


@pytest.mark.parametrize("event", list(Event))
def test_closed_or_sized_zero_it_never_fills(event: Event) -> None:
    for pool in (StandbyPool(phase=R, closed=True), StandbyPool(size=0, phase=R)):
        assert Action.FILL not in pool.on(event)
        assert Action.FILL not in pool.on(Event.WANTED)


def test_failures_back_off_and_a_launch_resets_them() -> None:
    pool = StandbyPool(phase=F)
    pool.on(Event.FAILED)
    pool.on(Event.FILLED)
    pool.on(Event.DIED)
    assert pool.failures == 2
    pool.on(Event.FILLED)
    pool.on(Event.TAKEN)
    assert pool.failures == 0


@pytest.mark.parametrize(
    ("failures", "delay"),
    [
        (0, 0.0),
        (-1, 0.0),
        (1, RETRY_FIRST),
        (2, 2 * RETRY_FIRST),
        (3, 4 * RETRY_FIRST),
        (40, RETRY_MAX),
    ],
)
def test_refill_delay(failures: int, delay: float) -> None:
    assert refill_delay(failures) == pytest.approx(delay)


@pytest.mark.parametrize(
    ("data", "standby"),
    [
        (b'{"standby": true}', True),
        (b'{"standby": 1}', False),
        (b'{"cwd": "/", "env": {}}', False),
        (b"[true]", False),
        (b"not json", False),
    ],
)
def test_the_fork_server_tells_a_standby_request(data: bytes, standby: bool) -> None:
    assert is_standby_request(data) is standby
