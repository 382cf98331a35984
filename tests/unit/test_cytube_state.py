"""Users and ranks from the server's events; replayed history told from live lines."""

from __future__ import annotations

import pytest

from rosey.connectors.cytube.state import ReplayFilter, Seen, User, UserList


def test_ranks_follow_the_events() -> None:
    users = UserList()
    users.replace_all([{"name": "Alice", "rank": 0}, {"name": "bob", "rank": 1}, "junk", {}])
    assert len(users) == 2
    assert users.rank_of("alice") == 0
    assert users.get("ALICE") == User("Alice", 0)
    # A registered user announced with rank 1 and raised a moment later.
    assert users.add({"name": "Carol", "rank": 1}) == User("Carol", 1)
    assert users.set_rank({"name": "carol", "rank": 3}) == User("Carol", 3)
    assert users.rank_of("Carol") == 3
    assert users.set_rank({"name": "stranger", "rank": 5}) is None
    assert users.set_rank({"name": "carol", "rank": "high"}) is None
    assert users.remove({"name": "BOB"}) == User("bob", 1)
    assert "bob" not in users
    assert users.remove({"name": "bob"}) is None
    assert users.remove({}) is None
    assert users.rank_of("nobody") == 0  # unknown: the least trusted rank that can chat
    assert users.add({"name": "", "rank": 2}) is None
    assert users.add({"name": "dave"}) == User("dave", 0)


@pytest.mark.parametrize(("rank", "guest"), [(-1, True), (0, True), (1, False), (255, False)])
def test_guest(rank: int, guest: bool) -> None:
    assert User("x", rank).guest is guest


def test_lines_before_login_are_history() -> None:
    replay = ReplayFilter(skew_ms=1000)
    assert replay.classify(5_000, "alice", "!roll") is Seen.REPLAY  # not logged in yet
    replay.begin(10_000)
    assert replay.classify(2_000, "alice", "!roll") is Seen.REPLAY
    assert replay.classify(9_500, "alice", "!roll") is Seen.LIVE  # within the clock skew
    assert replay.classify(10_200, "alice", "!help") is Seen.LIVE
    assert replay.classify(None, "alice", "!help") is Seen.REPLAY  # no time: not a command


def test_a_line_stamped_in_the_millisecond_of_login_is_live() -> None:
    """Regression: on loopback a line said right after login got the same whole-ms stamp as
    the login moment (a float) and was taken for history."""
    replay = ReplayFilter(skew_ms=0)
    replay.begin(10_000.7)
    assert replay.classify(10_000, "alice", "!new") is Seen.LIVE
    assert replay.classify(9_999, "alice", "!old") is Seen.REPLAY


def test_replay_after_login_is_still_history() -> None:
    """While a registered channel loads, the replay may come after the login answer."""
    replay = ReplayFilter(skew_ms=1000)
    replay.begin(10_000)
    assert replay.classify(1_000, "alice", "!roll") is Seen.REPLAY


def test_each_reconnect_starts_anew_and_delivered_lines_never_repeat() -> None:
    replay = ReplayFilter(skew_ms=1000)
    replay.begin(10_000)
    assert replay.classify(20_000, "alice", "!roll") is Seen.LIVE
    replay.connecting()
    assert replay.classify(20_000, "alice", "!roll") is Seen.DUPLICATE
    assert replay.classify(20_500, "bob", "!new") is Seen.REPLAY  # before the new login
    replay.begin(20_600)
    # A server clock ahead of ours: the old line looks recent, but it was delivered already.
    assert replay.classify(20_000, "Alice", "!roll") is Seen.DUPLICATE
    assert replay.classify(21_000, "alice", "!roll") is Seen.LIVE  # said again: a new line


def test_memory_is_bounded() -> None:
    replay = ReplayFilter(remember=3)
    replay.begin(0)
    for t in range(10):
        assert replay.classify(1000 + t, "a", "x") is Seen.LIVE
    assert replay.classify(1000, "a", "x") is Seen.LIVE  # forgotten: the oldest go first
    assert replay.classify(1009, "a", "x") is Seen.DUPLICATE
