"""The send pacer against CyTube's flood limiter (the double's ``rules.FloodLimiter``)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cytube.rules import FloodLimiter
from rosey.connectors.cytube.pacer import (
    ANTIFLOOD_DEFAULT,
    DEFAULT,
    ChannelLimits,
    FloodParams,
    Pacer,
)


def send_all(pacer: Pacer, wishes: list[float]) -> list[float]:
    """Departure times of lines wanted at ``wishes`` (sorted), each sent when the pacer says."""
    out: list[float] = []
    now = 0.0
    for wish in wishes:
        now = max(now, wish)
        now += pacer.delay(now)
        pacer.sent(now)
        out.append(now)
    return out


def test_a_burst_of_40_goes_out_20_at_once_then_one_interval_apart() -> None:
    pacer = Pacer(DEFAULT, interval_margin=0.03)
    times = send_all(pacer, [0.0] * 40)
    assert times[:20] == [0.0] * 20
    gaps = [b - a for a, b in itertools.pairwise(times[19:])]
    assert all(gap == pytest.approx(0.13) for gap in gaps)
    limiter = FloodLimiter(20, 10.0)
    assert all(limiter.allow(t) for t in times)


def test_a_short_pause_does_not_refill_the_burst() -> None:
    """A token-bucket sender would bunch lines after a 1 s pause and lose some; the pacer
    keeps the interval until a pause longer than burst / sustained (plus its margin)."""
    pacer = Pacer(DEFAULT, interval_margin=0.03)
    send_all(pacer, [0.0] * 20)
    assert pacer.delay(1.0) == 0.0  # the first line after a pause needs no wait...
    pacer.sent(1.0)
    assert pacer.delay(1.0) == pytest.approx(0.13)  # ...but the next one does
    assert pacer.delay(1.0 + 0.14) == 0.0


def test_a_long_pause_refills_the_burst() -> None:
    pacer = Pacer(DEFAULT, interval_margin=0.03, pause_margin=0.5)
    send_all(pacer, [0.0] * 25)
    last = 5 * 0.13
    assert pacer.delay(last + 2.6) == 0.0
    pacer.sent(last + 2.6)
    assert pacer.delay(last + 2.6) == 0.0  # a new burst


def test_refused_waits_what_the_server_says_and_counts_the_burst_used() -> None:
    pacer = Pacer(DEFAULT, interval_margin=0.0)
    pacer.sent(0.0)
    pacer.refused(0.0, 1000)
    assert pacer.delay(0.5) == pytest.approx(0.5)
    pacer.sent(1.0)
    assert pacer.delay(1.0) == pytest.approx(0.1)  # the burst counts as used up


@pytest.mark.parametrize(
    ("opts", "rank", "expected"),
    [
        ({}, 0, DEFAULT),
        ({"chat_antiflood": True}, 0, ANTIFLOOD_DEFAULT),
        ({"chat_antiflood": True}, 1, ANTIFLOOD_DEFAULT),
        ({"chat_antiflood": True}, 2, DEFAULT),  # moderators are exempt
        ({"chat_antiflood": True}, 255, DEFAULT),
        (
            {"chat_antiflood": True, "chat_antiflood_params": {"burst": 6, "sustained": 2}},
            0,
            FloodParams(6, 2.0),
        ),
        (
            {
                "chat_antiflood": True,
                "chat_antiflood_params": {"burst": 6, "sustained": 2, "cooldown": 5},
            },
            0,
            FloodParams(6, 2.0, 5.0),
        ),
        # Malformed values keep what was known.
        ({"chat_antiflood": "yes"}, 0, DEFAULT),
        ({"chat_antiflood": True, "chat_antiflood_params": {"burst": "6"}}, 0, ANTIFLOOD_DEFAULT),
        (
            {"chat_antiflood": True, "chat_antiflood_params": {"burst": 0, "sustained": 1}},
            0,
            ANTIFLOOD_DEFAULT,
        ),
    ],
)
def test_limits_follow_the_channel_and_the_rank(
    opts: dict[str, object], rank: int, expected: FloodParams
) -> None:
    limits = ChannelLimits().with_channel_opts(opts).with_rank(rank)
    assert limits.params() == expected


def test_a_malformed_rank_keeps_the_old_one() -> None:
    assert ChannelLimits().with_rank(3).with_rank("x").with_rank(True).rank == 3


params = st.sampled_from(
    [DEFAULT, ANTIFLOOD_DEFAULT, FloodParams(6, 2.0), FloodParams(3, 5.0, cooldown=1.0)]
)


@settings(max_examples=300, deadline=None)
@given(
    params=params,
    gaps=st.lists(st.floats(min_value=0.0, max_value=3.0), min_size=1, max_size=80),
    jitter=st.lists(st.floats(min_value=0.0, max_value=0.029), min_size=80, max_size=80),
)
def test_nothing_paced_is_ever_dropped_by_the_server(
    params: FloodParams, gaps: list[float], jitter: list[float]
) -> None:
    """Whatever the lines' rhythm, and with arrival times shifted by up to the margin (lines
    may arrive closer together than they left), the server's limiter accepts every line."""
    pacer = Pacer(params, interval_margin=0.03, pause_margin=0.5)
    wishes: list[float] = []
    now = 0.0
    for gap in gaps:
        now += gap
        wishes.append(now)
    departures = send_all(pacer, wishes)
    arrivals = [t + j for t, j in zip(departures, jitter, strict=False)]
    arrivals = [max(arrivals[: i + 1]) for i in range(len(arrivals))]  # one socket keeps order
    limiter = FloodLimiter(params.burst, params.sustained, params.cooldown)
    assert all(limiter.allow(t) for t in arrivals)


@settings(max_examples=100, deadline=None)
@given(params=params, n=st.integers(min_value=1, max_value=60))
def test_a_burst_is_not_paced_slower_than_needed(params: FloodParams, n: int) -> None:
    """Throughput: the burst at once, then one line per interval plus the margin."""
    times = send_all(Pacer(params, interval_margin=0.03), [0.0] * n)
    extra = max(0, n - params.burst)
    assert times[-1] == pytest.approx(extra * (params.interval + 0.03))
