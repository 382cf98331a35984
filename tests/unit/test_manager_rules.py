"""The pure rules the manager asks: ping streaks, error rate, desired-state precedence."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rosey.bus.client import EventBus
from rosey.config import BotConfig, ErrorRateSettings
from rosey.lifecycle.health import CommandWindow, ErrorRatePolicy, PingStreak
from rosey.manager.desired import DesiredState, _decode, _encode, resolve_enabled
from rosey.manager.gate import StartGate
from rosey.manager.manager import PluginManager
from rosey.plugins.discovery import DiscoveredPlugin
from rosey.protocol.manifest import Manifest

# --- ping streaks -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcomes", "failures"),
    [
        ([], 0),
        ([(1, True)], 0),
        ([(1, False)], 1),
        ([(1, False), (2, False), (3, False)], 3),
        ([(1, False), (2, True), (3, False)], 1),
        # Out of order: ping 2 succeeded before ping 1 timed out; 1 is older, so it is moot.
        ([(2, True), (1, False)], 0),
        ([(2, False), (1, True)], 1),
        ([(1, False), (3, False), (2, True)], 1),
    ],
)
def test_ping_streak_counts_failures_newer_than_the_newest_success(
    outcomes: list[tuple[int, bool]], failures: int
) -> None:
    streak = PingStreak()
    for seq, ok in outcomes:
        streak.record(seq, ok)
    assert streak.failures == failures


def test_ping_streak_rejects_sequence_zero() -> None:
    with pytest.raises(ValueError, match="start at 1"):
        PingStreak().record(0, True)


@given(st.lists(st.booleans(), max_size=30))
def test_in_order_pings_count_the_trailing_failures(oks: list[bool]) -> None:
    streak = PingStreak()
    for seq, ok in enumerate(oks, start=1):
        streak.record(seq, ok)
    trailing = len(oks) - (max((i for i, ok in enumerate(oks, 1) if ok), default=0))
    assert streak.failures == trailing


# --- error rate -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("errors", "total", "unhealthy"),
    [
        (0, 0, False),
        (1, 1, False),  # one failure of one command does not flap
        (4, 4, False),  # below min_commands
        (5, 5, True),
        (3, 6, False),  # exactly half is not above half
        (4, 7, True),
        (3, 7, False),
    ],
)
def test_error_rate_policy(errors: int, total: int, unhealthy: bool) -> None:
    problem = ErrorRatePolicy(window_s=60, threshold=0.5, min_commands=5).problem(errors, total)
    assert (problem is not None) is unhealthy
    if problem is not None:
        assert f"{errors} of {total} commands failed" in problem
        assert "the limit is 50%" in problem


def test_error_rate_policy_fields_match_the_config() -> None:
    assert ErrorRatePolicy(**ErrorRateSettings().model_dump()) == ErrorRatePolicy()


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"window_s": 0}, "window_s"),
        ({"threshold": 1.0}, "threshold"),
        ({"min_commands": 0}, "min_commands"),
    ],
)
def test_error_rate_policy_rejects_bad_values(kwargs: dict[str, float], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        ErrorRatePolicy(**kwargs)  # type: ignore[arg-type]


def test_command_window_forgets_what_is_older_than_the_window() -> None:
    window = CommandWindow(10)
    window.record(0, False)
    window.record(1, True)
    window.record(5, False)
    assert window.counts(5) == (2, 3)
    assert window.rate(5) == pytest.approx(2 / 3)
    assert window.counts(10) == (1, 2)  # the outcome at 0 is 10 s old: gone
    assert window.counts(15) == (0, 0)
    assert window.rate(15) == 0.0


def test_command_window_keeps_time_order_and_clears() -> None:
    window = CommandWindow(10)
    window.record(5, False)
    window.record(4, False)  # arrives late: counted at 5
    assert window.counts(14.5) == (2, 2)
    assert window.counts(15) == (0, 0)
    window.record(20, False)
    window.clear()
    assert window.counts(20) == (0, 0)
    with pytest.raises(ValueError, match="window_s"):
        CommandWindow(0)


@given(
    st.lists(
        st.tuples(st.floats(min_value=0, max_value=5, allow_nan=False), st.booleans()),
        max_size=40,
    ),
    st.floats(min_value=0.5, max_value=30),
)
def test_command_window_matches_a_recount(steps: list[tuple[float, bool]], window_s: float) -> None:
    window = CommandWindow(window_s)
    now = 0.0
    kept: list[tuple[float, bool]] = []
    for gap, ok in steps:
        now += gap
        window.record(now, ok)
        kept.append((now, ok))
        recent = [o for t, o in kept if now - t < window_s]
        assert window.counts(now) == (recent.count(False), len(recent))


# --- desired state ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config_enabled", "record", "expected"),
    [
        (True, None, (True, "config")),
        (False, None, (False, "config")),
        (True, DesiredState(False, True), (False, "runtime")),
        (False, DesiredState(True, False), (True, "runtime")),
        (True, DesiredState(True, True), (True, "runtime")),
        # The config's enabled changed since the choice: the config wins.
        (False, DesiredState(True, True), (False, "config")),
        (True, DesiredState(False, False), (True, "config")),
    ],
)
def test_resolve_enabled(
    config_enabled: bool, record: DesiredState | None, expected: tuple[bool, str]
) -> None:
    assert resolve_enabled(config_enabled, record) == expected


def test_desired_state_round_trips_and_bad_documents_are_ignored() -> None:
    choices = {"a": DesiredState(False, True, 12.5), "b": DesiredState(True, False, 0.0)}
    assert _decode(_encode(choices), "test") == choices
    assert _decode(b"not json", "test") == {}
    assert _decode(b"[]", "test") == {}
    body = {"plugins": {"a": {"enabled": "yes", "config_enabled": True}, "b": 3}}
    assert _decode(json.dumps(body).encode(), "test") == {}
    body = {"plugins": {"a": {"enabled": False, "config_enabled": True, "changed_at": "x"}}}
    assert _decode(json.dumps(body).encode(), "test") == {"a": DesiredState(False, True, 0.0)}


# --- effective manifest -----------------------------------------------------------------------


async def test_health_check_interval_applies_only_where_the_manifest_sets_no_interval(
    tmp_path: Path,
) -> None:
    def manager_of(config: BotConfig) -> PluginManager:
        bus = EventBus("nats://127.0.0.1:1", name="unused")  # never connected
        return PluginManager(config, nats_url=bus.url, bus=bus)

    plain = Manifest.model_validate({"name": "a", "version": "1.0.0", "entrypoint": "m:C"})
    tuned = Manifest.model_validate(
        {"name": "b", "version": "1.0.0", "entrypoint": "m:C", "health": {"interval_s": 2}}
    )
    found_plain, found_tuned = DiscoveredPlugin(plain, tmp_path), DiscoveredPlugin(tuned, tmp_path)

    unset = manager_of(BotConfig())  # the config file does not say: manifest defaults
    assert unset._effective_manifest(found_plain).health.interval_s == 10
    config = BotConfig.model_validate({"health_check_interval": 30})
    assert manager_of(config)._effective_manifest(found_plain).health.interval_s == 30
    assert manager_of(config)._effective_manifest(found_tuned).health.interval_s == 2
    override = BotConfig.model_validate(
        {"health_check_interval": 30, "plugins": {"a": {"health": {"interval_s": 7}}}}
    )
    assert manager_of(override)._effective_manifest(found_plain).health.interval_s == 7


# --- start gate -------------------------------------------------------------------------------


async def test_the_start_gate_limits_concurrent_starts() -> None:
    gate = StartGate(slots=2, hold_s=60)
    inside = 0
    most = 0

    async def start() -> None:
        nonlocal inside, most
        async with gate.slot():
            inside += 1
            most = max(most, inside)
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            inside -= 1

    await asyncio.gather(*(start() for _ in range(6)))
    assert most == 2


async def test_a_slow_start_gives_its_slot_back_after_hold_s() -> None:
    """A plugin with a slow on_start must not hold the others back for longer than hold_s."""
    gate = StartGate(slots=1, hold_s=0.05)
    slow_may_finish = asyncio.Event()
    order: list[str] = []

    async def slow() -> None:
        async with gate.slot():
            order.append("slow in")
            await slow_may_finish.wait()
        order.append("slow out")

    async def quick() -> None:
        async with gate.slot():
            order.append("quick in")
        slow_may_finish.set()

    async with asyncio.timeout(5):
        await asyncio.gather(slow(), quick())
    assert order == ["slow in", "quick in", "slow out"]
    async with asyncio.timeout(1), gate.slot():  # every slot came back exactly once
        pass
    assert not gate._semaphore.locked()
