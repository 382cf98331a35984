"""Reconnect backoff within the connection throttle; refusals in words."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cytube.rules import TokenBucket
from rosey.connectors.cytube.policy import (
    Backoff,
    RefusalKind,
    pick_socket_server,
    refusal_from_connect_error,
    refusal_from_error_msg,
    refusal_from_kick,
    refusal_from_login,
    refusal_from_need_password,
)


@pytest.mark.parametrize(
    ("error", "account", "kind", "fatal", "wait"),
    [
        ("That username is registered.", False, RefusalKind.NAME_REGISTERED, True, None),
        (
            "That name is already in use on this channel.",
            False,
            RefusalKind.NAME_TAKEN,
            False,
            None,
        ),
        (
            "Guest logins are restricted to one per IP address per 60 seconds.",
            False,
            RefusalKind.GUEST_COOLDOWN,
            False,
            60.0,
        ),
        (
            "Guest logins are restricted to one per IP address per 2.5 seconds.",
            False,
            RefusalKind.GUEST_COOLDOWN,
            False,
            2.5,
        ),
        ("Invalid username/password combination", True, RefusalKind.BAD_PASSWORD, True, None),
        ("That username is reserved.", False, RefusalKind.NAME_INVALID, True, None),
        (
            "Invalid username.  Usernames must be 1-20 characters long",
            False,
            RefusalKind.NAME_INVALID,
            True,
            None,
        ),
        ("Something new", False, RefusalKind.LOGIN_FAILED, False, None),
        (None, False, RefusalKind.LOGIN_FAILED, False, None),
    ],
)
def test_login_refusals(
    error: str | None, account: bool, kind: RefusalKind, fatal: bool, wait: float | None
) -> None:
    refusal = refusal_from_login(error, username="RoseyBot", account=account)
    assert (refusal.kind, refusal.fatal, refusal.wait) == (kind, fatal, wait)
    assert "RoseyBot" in refusal.words or kind in (
        RefusalKind.GUEST_COOLDOWN,
        RefusalKind.LOGIN_FAILED,
    )


def test_other_refusals() -> None:
    assert refusal_from_need_password(configured=False, channel="c").kind is (
        RefusalKind.CHANNEL_PASSWORD_NEEDED
    )
    wrong = refusal_from_need_password(configured=True, channel="c")
    assert wrong.kind is RefusalKind.CHANNEL_PASSWORD_WRONG
    assert wrong.fatal
    assert "channel_password" in wrong.words
    assert refusal_from_kick({"x": 1}).kind is RefusalKind.KICKED
    kicked = refusal_from_kick("Flooding")
    assert (kicked.kind, kicked.fatal) == (RefusalKind.KICKED, False)
    assert "Flooding" in kicked.words
    assert refusal_from_kick("You're banned!").kind is RefusalKind.BANNED
    assert (
        refusal_from_error_msg("PM failed: x isn't connected to this channel.", channel="c") is None
    )
    invalid = refusal_from_error_msg("Invalid channel name.  Channel names may ...", channel="c!")
    assert invalid is not None
    assert invalid.fatal
    assert not refusal_from_connect_error("refused", server="http://x").fatal


@pytest.mark.parametrize(
    ("body", "url"),
    [
        (
            {
                "servers": [
                    {"url": "http://a", "secure": False},
                    {"url": "https://b", "secure": True},
                ]
            },
            "https://b",
        ),
        ({"servers": [{"url": "http://a", "secure": False}]}, "http://a"),
        ({"servers": [{"secure": True}, {"url": "http://a"}]}, "http://a"),
        ({"servers": []}, None),
        ({"servers": "x"}, None),
        ([], None),
    ],
)
def test_pick_socket_server_prefers_secure(body: object, url: str | None) -> None:
    assert pick_socket_server(body) == url


def test_backoff_grows_with_jitter_and_resets_after_a_stable_connection() -> None:
    rng = random.Random(1)
    backoff = Backoff(base=1, factor=2, cap=10, jitter=0.5, stable_after=60, throttle_refill=0.0)
    assert backoff.delay(0, rng) == 0  # the first attempt at once
    delays = []
    for _ in range(6):
        backoff.down(0)
        delays.append(backoff.delay(0, rng))
    for n, delay in enumerate(delays):
        full = min(10, 2**n)
        assert full * 0.5 <= delay <= full
    backoff.up(100)
    backoff.down(200)  # up for 100 s: stable
    assert 0.5 <= backoff.delay(200, rng) <= 1
    assert backoff.delay(200, rng, at_least=60) == 60  # e.g. the guest login delay


def test_backoff_validates_jitter() -> None:
    with pytest.raises(ValueError, match="jitter"):
        Backoff(jitter=2)


@settings(max_examples=200, deadline=None)
@given(
    failures=st.lists(st.floats(min_value=0, max_value=30), min_size=1, max_size=40),
    seed=st.integers(0, 1000),
)
def test_backoff_never_trips_the_connection_throttle(failures: list[float], seed: int) -> None:
    """Attempts at the delays the policy gives, however short the connections in between,
    never find the server's bucket (5, one more per 10 s) empty."""
    rng = random.Random(seed)
    backoff = Backoff(base=0.01, cap=0.5, jitter=0.5)
    server = TokenBucket(5, 10.0)
    now = 0.0
    for lasted in failures:
        now += backoff.delay(now, rng)
        backoff.attempt(now)
        assert server.take(now), f"refused at {now:.2f}"
        now += lasted
        backoff.down(now)
