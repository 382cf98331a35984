"""The one health timer's schedule (``BeatSchedule``): on time, never late, shared wake-ups."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rosey.lifecycle.health import BeatSchedule


def run_timer(schedule: BeatSchedule[str], until: float) -> list[tuple[float, list[str]]]:
    """What a timer that sleeps until ``next_wake`` does up to ``until``: (when, members)."""
    wakeups: list[tuple[float, list[str]]] = []
    while (wake := schedule.next_wake()) is not None and wake <= until:
        due = schedule.due(wake)
        assert due, f"woke at {wake} for nothing"
        wakeups.append((wake, due))
    return wakeups


@pytest.mark.parametrize(
    ("members", "until", "expected"),
    [
        # One member: every interval from when it was added.
        ([("a", 10.0, 0.0)], 30.0, [(10.0, ["a"]), (20.0, ["a"]), (30.0, ["a"])]),
        # Beats within the window (10 % of 10 s, capped at 1 s) share the first one's wake-up.
        ([("a", 10.0, 0.0), ("b", 10.0, 0.5)], 20.0, [(10.0, ["a", "b"]), (20.0, ["a", "b"])]),
        # Added later, within half an interval: its first beat joins the earlier one's phase.
        ([("a", 10.0, 0.0), ("b", 10.0, 1.5)], 20.0, [(10.0, ["a", "b"]), (20.0, ["a", "b"])]),
        # Beyond half an interval, and beyond the window: wake-ups of their own.
        ([("a", 10.0, 0.0), ("b", 10.0, 6.0)], 16.0, [(10.0, ["a"]), (16.0, ["b"])]),
        # The window is a share of the member's own interval: 0.05 s for a 0.5 s interval.
        ([("a", 0.5, 0.0), ("b", 0.5, 0.04)], 0.5, [(0.5, ["a", "b"])]),
        ([("a", 0.5, 0.0), ("b", 0.5, 0.3)], 0.8, [(0.5, ["a"]), (0.8, ["b"])]),
        # Different intervals: each keeps its own beat.
        (
            [("fast", 1.0, 0.0), ("slow", 3.0, 0.0)],
            3.0,
            [(1.0, ["fast"]), (2.0, ["fast"]), (3.0, ["slow", "fast"])],
        ),
    ],
)
def test_beats_are_on_time_and_close_ones_share_a_wakeup(
    members: list[tuple[str, float, float]],
    until: float,
    expected: list[tuple[float, list[str]]],
) -> None:
    schedule: BeatSchedule[str] = BeatSchedule(share=0.1, cap_s=1.0)
    for name, interval, added in members:
        schedule.add(name, interval, added)
    got = run_timer(schedule, until)
    assert [(round(t, 6), names) for t, names in got] == expected


def test_a_beat_is_never_later_than_due_and_never_earlier_than_its_window() -> None:
    schedule: BeatSchedule[str] = BeatSchedule(share=0.1, cap_s=1.0)
    added = {f"p{i}": i * 0.37 for i in range(40)}
    for name, at in added.items():
        schedule.add(name, 10.0, at)
    beats: dict[str, list[float]] = {name: [] for name in added}
    for wake, due in run_timer(schedule, 100.0):
        for name in due:
            beats[name].append(wake)
    for name, times in beats.items():
        for k, t in enumerate(times, start=1):
            on_time = added[name] + k * 10.0
            # At most half an interval early (joining a phase) and the window (sharing a wake-up)
            assert on_time - 5.0 - 1.0 - 1e-9 <= t <= on_time + 1e-9, (name, k, t)
    # Shared: 40 members added over 14.4 s join a few phases: a few wake-ups per 10 s cycle,
    # not one per beat.
    later = run_timer(schedule, 200.0)
    assert sum(len(due) for _, due in later) == 400
    assert len(later) <= 3 * 10


def test_removed_members_do_not_beat_and_do_not_wake_the_timer() -> None:
    schedule: BeatSchedule[str] = BeatSchedule()
    schedule.add("a", 10.0, 0.0)
    schedule.add("b", 10.0, 12.0)
    schedule.remove("a")
    assert len(schedule) == 1
    assert schedule.next_wake() == 22.0
    assert schedule.due(22.0) == ["b"]
    schedule.remove("b")
    assert schedule.next_wake() is None
    assert schedule.due(1000.0) == []


def test_a_first_beat_joins_the_latest_phase_within_half_an_interval() -> None:
    schedule: BeatSchedule[str] = BeatSchedule(share=0.0)
    schedule.add("a", 10.0, 0.0)  # beats at 10, 20, ...
    schedule.add("b", 10.0, 3.0)  # would beat at 13: joins 10 (3 s early, never late)
    schedule.add("c", 10.0, 6.0)  # would beat at 16: 10 is too early (more than 5 s)
    schedule.add("d", 10.0, 7.0)  # would beat at 17: joins c's 16
    schedule.add("e", 5.0, 3.0)  # another interval: a phase of its own (8)
    assert run_timer(schedule, 20.0) == [
        (8.0, ["e"]),
        (10.0, ["a", "b"]),
        (13.0, ["e"]),
        (16.0, ["c", "d"]),
        (18.0, ["e"]),
        (20.0, ["a", "b"]),
    ]


def test_a_timer_that_fell_behind_skips_whole_intervals() -> None:
    schedule: BeatSchedule[str] = BeatSchedule()
    schedule.add("a", 1.0, 0.0)
    assert schedule.due(5.5) == ["a"]  # one beat, not five
    assert schedule.next_wake() == 6.0


def test_adding_again_replaces_the_schedule() -> None:
    schedule: BeatSchedule[str] = BeatSchedule()
    schedule.add("a", 10.0, 0.0)
    schedule.add("a", 2.0, 3.0)
    assert run_timer(schedule, 7.0) == [(5.0, ["a"]), (7.0, ["a"])]


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"share": 1.0}, "early window"),
        ({"cap_s": -1.0}, "early window"),
        ({"first_share": 1.0}, "first beat"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, float], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        BeatSchedule(**kwargs)


def test_a_bad_interval_is_refused() -> None:
    schedule: BeatSchedule[str] = BeatSchedule()
    with pytest.raises(ValueError, match="must be > 0"):
        schedule.add("a", 0.0, 0.0)


@given(
    st.lists(st.tuples(st.floats(0.1, 20.0), st.floats(0.0, 20.0)), min_size=1, max_size=15),
    st.floats(0.0, 0.5),
)
def test_every_member_beats_once_per_interval(
    members: list[tuple[float, float]], share: float
) -> None:
    schedule: BeatSchedule[int] = BeatSchedule(share=share, cap_s=1.0)
    for i, (interval, added) in enumerate(members):
        schedule.add(i, interval, added)
    until = 60.0
    counts = dict.fromkeys(range(len(members)), 0)
    while (wake := schedule.next_wake()) is not None and wake <= until:
        for i in schedule.due(wake):
            counts[i] += 1
    for i, (interval, added) in enumerate(members):
        on_time = int((until - added) // interval)  # beats due by ``until``
        # ± 1: the last beat may fall either side of ``until`` (float sums, the early window)
        assert on_time - 1 <= counts[i] <= on_time + 1, (i, interval, added, counts[i])
