"""The manager's lifecycle with real plugin processes: transitions, events, API edge cases."""

from __future__ import annotations

import asyncio
import inspect
import logging
from pathlib import Path

import pytest
from test_manager_kit import make_config, running_manager, write_plugin

from rosey.errors import InvalidState, StartFailed
from rosey.lifecycle.states import TRANSITIONS, Event, State
from rosey.manager import PluginManager
from rosey.manager.status import STATS_KEYS, STATUS_KEYS

EVENT_KEYS = {"plugin", "state", "previous", "reason", "timestamp"}


def assert_valid_chain(events: list[dict[str, object]]) -> None:
    """Each event of one plugin starts where the previous one ended, by a move in the table."""
    state = State.STOPPED
    allowed = {(s, t) for (s, _), t in TRANSITIONS.items()}
    for event in events:
        assert event["previous"] == state, events
        assert (State(str(event["previous"])), State(str(event["state"]))) in allowed, event
        state = State(str(event["state"]))


async def test_start_and_stop_publish_each_transition_with_previous_state_and_reason(
    nats_url: str, tmp_path: Path
) -> None:
    write_plugin(tmp_path / "plugins", "alpha")
    async with running_manager(nats_url, make_config(tmp_path / "plugins", tmp_path)) as h:
        status = await h.manager.start_plugin("alpha")
        assert status["state"] == "running"
        assert status["stats"]["running"] is True
        ready = await h.events.wait("alpha", "running")
        assert ready["previous"] == "starting"
        assert ready["reason"].startswith("ready in ")

        status = await h.manager.stop_plugin("alpha")
        assert status["state"] == "stopped"
        assert status["last_exit_code"] == 0
        stopped = await h.events.wait("alpha", "stopped", after=1)
        assert stopped["reason"] == "stopped (exit 0)"

        events = h.events.of("alpha")
        assert [e["state"] for e in events] == ["starting", "running", "stopping", "stopped"]
        assert all(set(e) == EVENT_KEYS for e in events)
        assert events[0]["reason"] == "start requested"
        assert events[2]["reason"] == "stop requested"
        assert_valid_chain(events)


async def test_a_stop_logs_one_info_line_with_why_and_how_it_ended(
    nats_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Every plugin stops at once when the bot does: one INFO line each (its start is DEBUG),
    naming why it was asked and how it ended; the published events keep both transitions."""
    write_plugin(tmp_path / "plugins", "alpha")
    async with running_manager(nats_url, make_config(tmp_path / "plugins", tmp_path)) as h:
        await h.manager.start_plugin("alpha")
        with caplog.at_level(logging.DEBUG, logger="rosey.manager"):
            await h.manager.stop_plugin("alpha")
        await h.events.wait("alpha", "stopped", after=1)
        assert [e["state"] for e in h.events.of("alpha")][-2:] == ["stopping", "stopped"]
    lines = [
        (r.levelno, r.getMessage()) for r in caplog.records if r.getMessage().startswith("alpha")
    ]
    info = [text for level, text in lines if level >= logging.INFO]
    assert len(info) == 1, lines
    assert info[0].endswith("stopping → stopped: stopped (exit 0); asked: stop requested"), info
    assert [text for level, text in lines if level == logging.DEBUG and "→ stopping" in text]


async def test_a_running_plugin_costs_the_manager_three_tasks(
    nats_url: str, tmp_path: Path
) -> None:
    """Its life task and the two pumps of its output: the health checks ride the shared beat
    and the wait for its exit, a stop or a handover is one future (no task per event), since
    what a task costs is paid a hundred times over with a hundred plugins."""
    for name in ("alpha", "beta", "gamma"):
        write_plugin(tmp_path / "plugins", name)
    async with running_manager(nats_url, make_config(tmp_path / "plugins", tmp_path)) as h:
        await h.manager.start_plugin("alpha")
        one = {t for t in asyncio.all_tasks() if not t.done()}
        await h.manager.start_plugin("beta")
        await h.manager.start_plugin("gamma")
        three = {t for t in asyncio.all_tasks() if not t.done()}
        added = three - one
        # One spare for a task of the shared machinery caught in flight (a ping's).
        assert len(added) <= 2 * 3 + 1, sorted(t.get_name() for t in added)


async def test_status_has_exactly_the_keys_of_the_contract(nats_url: str, tmp_path: Path) -> None:
    write_plugin(tmp_path / "plugins", "alpha")
    write_plugin(tmp_path / "plugins", "beta", dependencies=["alpha"])
    async with running_manager(nats_url, make_config(tmp_path / "plugins", tmp_path)) as h:
        await h.manager.start_all()
        status = h.manager.get_plugin_status("alpha")
        assert tuple(status) == STATUS_KEYS
        assert tuple(status["stats"]) == STATS_KEYS
        assert status["dependents"] == ["beta"]
        assert status["uptime_seconds"] >= 0
        assert status["stats"]["memory_mb"] > 0
        assert status["error_rate"] == 0.0
        assert status["next_restart_in"] is None
        assert status["enforced"] is False
        assert [s["name"] for s in h.manager.get_all_status()] == ["alpha", "beta"]
        assert h.manager.get_plugin_status("beta")["dependencies"] == ["alpha"]


def test_the_python_api_of_the_design_exists() -> None:
    """DESIGN 2.8: the names exist; the ones doing I/O are coroutines."""
    coroutines = [
        "initialize",
        "start_all",
        "stop_all",
        "start_plugin",
        "stop_plugin",
        "restart_plugin",
        "enable_plugin",
        "disable_plugin",
        "health_check_plugin",
        "shutdown",
    ]
    for name in coroutines:
        assert inspect.iscoroutinefunction(getattr(PluginManager, name)), name
    for name in ("get_plugin_status", "get_all_status"):
        assert callable(getattr(PluginManager, name))
        assert not inspect.iscoroutinefunction(getattr(PluginManager, name))
    stop = inspect.signature(PluginManager.stop_plugin).parameters["stop_dependents"]
    assert stop.default is True


async def test_start_of_a_running_plugin_is_a_no_op(nats_url: str, tmp_path: Path) -> None:
    write_plugin(tmp_path / "plugins", "alpha")
    async with running_manager(nats_url, make_config(tmp_path / "plugins", tmp_path)) as h:
        await h.manager.start_plugin("alpha")
        pid = h.pid("alpha")
        count = len(h.events.events)
        status = await h.manager.start_plugin("alpha")
        assert status["state"] == "running"
        assert status["stats"]["pid"] == pid
        assert len(h.events.events) == count


async def test_impossible_actions_raise_invalid_state_not_invalid_transition(
    nats_url: str, tmp_path: Path
) -> None:
    write_plugin(tmp_path / "plugins", "alpha")
    async with running_manager(nats_url, make_config(tmp_path / "plugins", tmp_path)) as h:
        await h.manager.disable_plugin("alpha")
        for action in (h.manager.start_plugin, h.manager.restart_plugin):
            with pytest.raises(InvalidState) as caught:
                await action("alpha")
            assert caught.value.code == "invalid_state"
            assert "alpha" in str(caught.value)
        # Stopping or disabling what is already stopped/disabled is idempotent.
        assert (await h.manager.stop_plugin("alpha"))["state"] == "disabled"
        assert (await h.manager.disable_plugin("alpha"))["state"] == "disabled"
        health = await h.manager.health_check_plugin("alpha")
        assert health == {"ok": False, "state": "disabled", "error": "alpha is disabled"}


async def test_health_check_plugin_pings_now(nats_url: str, tmp_path: Path) -> None:
    write_plugin(tmp_path / "plugins", "alpha")
    async with running_manager(nats_url, make_config(tmp_path / "plugins", tmp_path)) as h:
        await h.manager.start_plugin("alpha")
        answer = await h.manager.health_check_plugin("alpha")
        assert answer["ok"] is True
        assert answer["pid"] == h.pid("alpha")
        assert answer["state"] == "running"
        assert answer["latency_ms"] >= 0


async def test_stop_while_starting_stops_it(nats_url: str, tmp_path: Path) -> None:
    write_plugin(tmp_path / "plugins", "slow", config={"start_delay_s": 30})
    async with running_manager(nats_url, make_config(tmp_path / "plugins", tmp_path)) as h:
        start = asyncio.create_task(h.manager.start_plugin("slow"))
        await h.events.wait("slow", "starting")
        status = await h.manager.stop_plugin("slow")
        assert status["state"] == "stopped"
        with pytest.raises(InvalidState, match="a stop was requested"):
            await start
        await h.events.wait("slow", "stopped")
        assert h.events.states("slow") == ["starting", "stopping", "stopped"]


async def test_stop_during_backoff_cancels_the_pending_restart(
    nats_url: str, tmp_path: Path
) -> None:
    write_plugin(tmp_path / "plugins", "alpha")
    config = make_config(
        tmp_path / "plugins",
        tmp_path,
        backoff={"initial_s": 1.0, "factor": 1, "max_s": 1.0, "jitter": 0, "reset_after_s": 60},
    )
    async with running_manager(nats_url, config) as h:
        await h.manager.start_plugin("alpha")
        await h.command("alpha", "exit", "3")
        await h.events.wait("alpha", "crashed")
        status = h.manager.get_plugin_status("alpha")
        assert status["next_restart_in"] is not None
        assert 0 < status["next_restart_in"] <= 1.0
        mark = len(h.events.events)
        status = await h.manager.stop_plugin("alpha")
        assert status["state"] == "stopped"
        assert status["next_restart_in"] is None
        assert h.manager.supervisors["alpha"].settled
        # The restart was due within 1 s; give it three times that to show up, if it would.
        with pytest.raises(AssertionError, match="no matching event"):
            await h.events.wait("alpha", "starting", after=mark, timeout=3)


async def test_start_skips_the_backoff_of_a_pending_restart(nats_url: str, tmp_path: Path) -> None:
    write_plugin(tmp_path / "plugins", "alpha")
    config = make_config(
        tmp_path / "plugins",
        tmp_path,
        backoff={"initial_s": 600, "factor": 1, "max_s": 600, "jitter": 0, "reset_after_s": 60},
    )
    async with running_manager(nats_url, config) as h:
        await h.manager.start_plugin("alpha")
        await h.command("alpha", "exit", "3")
        await h.events.wait("alpha", "crashed")
        status = await h.manager.start_plugin("alpha")
        assert status["state"] == "running"
        assert status["next_restart_in"] is None
        await h.events.wait("alpha", "running", after=h.events.index("alpha", "crashed"))
        assert h.events.of("alpha")[-2]["reason"] == "start requested"


async def test_concurrent_actions_on_one_plugin_keep_a_consistent_state(
    nats_url: str, tmp_path: Path
) -> None:
    """Many actions at once: each runs whole (per-plugin lock), a stop or disable may cut a
    start short (InvalidState, never InvalidTransition), and the state chain stays valid."""
    write_plugin(tmp_path / "plugins", "alpha", config={"start_delay_s": 0.2})
    async with running_manager(nats_url, make_config(tmp_path / "plugins", tmp_path)) as h:
        m = h.manager
        results = await asyncio.gather(
            m.start_plugin("alpha"),
            m.stop_plugin("alpha"),
            m.restart_plugin("alpha"),
            m.start_plugin("alpha"),
            m.stop_plugin("alpha"),
            m.start_plugin("alpha"),
            m.disable_plugin("alpha"),
            m.enable_plugin("alpha"),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                assert isinstance(result, InvalidState), repr(result)
                assert "stop was requested" in str(result)
        states = [r["state"] if isinstance(r, dict) else None for r in results]
        assert states[1] == "stopped"
        assert states[4] == "stopped"
        assert states[6] == "disabled"
        assert states[7] == "stopped"
        assert (await m.start_plugin("alpha"))["state"] == "running"
        await h.events.wait("alpha", "running", after=len(h.events.events) - 1)
        assert_valid_chain(h.events.of("alpha"))


async def test_concurrent_restarts_run_one_after_the_other(nats_url: str, tmp_path: Path) -> None:
    write_plugin(tmp_path / "plugins", "alpha")
    async with running_manager(nats_url, make_config(tmp_path / "plugins", tmp_path)) as h:
        await h.manager.start_plugin("alpha")
        first = h.pid("alpha")
        results = await asyncio.gather(*(h.manager.restart_plugin("alpha") for _ in range(3)))
        assert [r["state"] for r in results] == ["running"] * 3
        assert [r["restart_count"] for r in results] == [1, 2, 3]
        assert len({first, *(r["stats"]["pid"] for r in results)}) == 4
        await h.events.wait("alpha", "running", after=len(h.events.events) - 1)
        events = h.events.of("alpha")
        assert [e["state"] for e in events] == ["starting", "running"] + [
            "stopping",
            "stopped",
            "starting",
            "running",
        ] * 3
        assert_valid_chain(events)


async def test_start_failures_say_why(nats_url: str, tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    write_plugin(plugins, "raises", restart_policy="never", config={"fail_start": "no config"})
    write_plugin(
        plugins,
        "exits",
        restart_policy="never",
        config={"exit_on_start": 4, "stderr": ["cannot open the database"]},
    )
    write_plugin(
        plugins,
        "late",
        restart_policy="never",
        config={"start_delay_s": 30},
        health={"start_timeout_s": 1},
    )
    async with running_manager(nats_url, make_config(plugins, tmp_path)) as h:
        with pytest.raises(StartFailed, match="on_start failed: RuntimeError: no config"):
            await h.manager.start_plugin("raises")
        with pytest.raises(StartFailed, match=r"exited during start \(exit 4\)") as caught:
            await h.manager.start_plugin("exits")
        assert "cannot open the database" in str(caught.value)
        with pytest.raises(StartFailed, match="was not ready within 1 s"):
            await h.manager.start_plugin("late")
        for name in ("raises", "exits", "late"):
            status = h.manager.get_plugin_status(name)
            assert status["state"] == "crashed", status
            assert status["crash_count"] == 1
            assert status["last_error"]
        assert "cannot open the database" in h.manager.get_plugin_status("exits")["last_error"]
        assert h.manager.get_plugin_status("exits")["last_exit_code"] == 4


def test_every_state_and_event_is_reachable_through_the_table() -> None:
    """The manager relies on the table: every state is entered by some event."""
    targets = set(TRANSITIONS.values())
    assert targets == set(State)
    assert {event for (_, event) in TRANSITIONS} == set(Event)
