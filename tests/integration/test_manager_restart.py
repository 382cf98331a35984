"""Restart policies, backoff, crash window and critical plugins with real processes."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest
from test_manager_kit import make_config, running_manager, write_plugin

from helpers import eventually


@pytest.mark.parametrize(
    ("policy", "how", "restarted", "final"),
    [
        ("on-failure", "exit 0", False, "stopped"),
        ("on-failure", "exit 3", True, "running"),
        ("on-failure", "kill", True, "running"),
        ("always", "exit 0", True, "running"),
        ("always", "exit 3", True, "running"),
        ("never", "exit 3", False, "crashed"),
        ("never", "kill", False, "crashed"),
    ],
)
async def test_restart_policy(
    nats_url: str, tmp_path: Path, policy: str, how: str, restarted: bool, final: str
) -> None:
    """Regression: on-failure used to never restart."""
    write_plugin(tmp_path / "plugins", "p", restart_policy=policy)
    async with running_manager(nats_url, make_config(tmp_path / "plugins", tmp_path)) as h:
        await h.manager.start_plugin("p")
        first_pid = h.pid("p")
        command, *args = how.split()
        await h.command("p", command, *args)
        ended = "stopped" if how == "exit 0" else "crashed"
        await h.events.wait("p", ended, after=2)
        supervisor = h.manager.supervisors["p"]
        if restarted:
            ready = await h.events.wait("p", "running", after=3)
            assert ready["previous"] == "starting"
            assert h.events.of("p")[-2]["reason"].startswith("restart 1 after ")
        else:
            await supervisor.wait_for(lambda s: s.settled, timeout=10)
        status = h.manager.get_plugin_status("p")
        assert status["state"] == final
        assert status["restart_count"] == (1 if restarted else 0)
        assert status["crash_count"] == (0 if how == "exit 0" else 1)
        assert status["last_exit_code"] == {"exit 0": 0, "exit 3": 3, "kill": -9}[how]
        if restarted:
            assert status["stats"]["pid"] != first_pid
        if how != "exit 0":
            assert status["last_error"].startswith("crashed (")


async def test_a_crash_loop_ends_disabled_with_the_reason_and_stderr(
    nats_url: str, tmp_path: Path
) -> None:
    """Regression: the crash counter was reset on every start, so a crash loop never ended."""
    write_plugin(
        tmp_path / "plugins",
        "loop",
        restart_policy="always",
        config={"exit_on_start": 2, "stderr": ["Traceback: the config file is gone"]},
    )
    config = make_config(tmp_path / "plugins", tmp_path, max_crash_count=2, crash_window_s=60)
    async with running_manager(nats_url, config) as h:
        with pytest.raises(Exception, match="exited during start"):
            await h.manager.start_plugin("loop")
        event = await h.events.wait("loop", "disabled")
        assert event["previous"] == "crashed"
        assert event["reason"].startswith("disabled after 3 crashes within 60 s")
        supervisor = h.manager.supervisors["loop"]
        await supervisor.wait_for(lambda s: s.settled, timeout=10)
        status = h.manager.get_plugin_status("loop")
        assert status["state"] == "disabled"
        assert status["enabled"] is False
        assert status["crash_count"] == 3
        assert status["last_exit_code"] == 2
        assert "max_crash_count 2" in status["last_error"]
        assert "Traceback: the config file is gone" in status["last_error"]
        assert "disabled" in (h.manager.unavailable_reason("loop") or "")


async def test_operator_starts_do_not_reset_the_crash_count(nats_url: str, tmp_path: Path) -> None:
    """Regression: the crash counter was reset on every start."""
    write_plugin(tmp_path / "plugins", "p", restart_policy="never", config={"exit_on_start": 1})
    config = make_config(tmp_path / "plugins", tmp_path, max_crash_count=2)
    async with running_manager(nats_url, config) as h:
        for expected in (1, 2):
            with pytest.raises(Exception, match="exited during start"):
                await h.manager.start_plugin("p")
            assert h.manager.get_plugin_status("p")["crash_count"] == expected
            assert h.manager.get_plugin_status("p")["state"] == "crashed"
        with pytest.raises(Exception, match="disabled after 3 crashes"):
            await h.manager.start_plugin("p")
        assert h.manager.get_plugin_status("p")["state"] == "disabled"

        status = await h.manager.enable_plugin("p")
        assert status["crash_count"] == 0
        assert status["state"] == "stopped"


async def test_one_plugins_backoff_never_delays_another(nats_url: str, tmp_path: Path) -> None:
    """Regression: the backoff sleep sat in the monitoring loop and stalled every plugin."""
    plugins = tmp_path / "plugins"
    write_plugin(plugins, "crashy")
    write_plugin(plugins, "steady", health={"interval_s": 0.2, "timeout_s": 1})
    backoff = {"initial_s": 30, "factor": 1, "max_s": 30, "jitter": 0, "reset_after_s": 60}
    async with running_manager(nats_url, make_config(plugins, tmp_path, backoff=backoff)) as h:
        await h.manager.start_all()
        await h.command("crashy", "exit", "1")
        await h.events.wait("crashy", "crashed")
        assert h.manager.get_plugin_status("crashy")["next_restart_in"] > 20
        # While crashy waits 30 s: steady restarts, answers and is health-checked.
        status = await h.manager.restart_plugin("steady")
        assert status["state"] == "running"
        assert (await h.command("steady", "ok"))["text"] == "ok"
        assert (await h.manager.health_check_plugin("steady"))["ok"] is True
        assert h.manager.get_plugin_status("crashy")["state"] == "crashed"
        assert h.manager.get_plugin_status("crashy")["next_restart_in"] > 10


async def test_the_backoff_grows_and_resets_after_a_stable_run(
    nats_url: str, tmp_path: Path
) -> None:
    """0.2 s, then 2 s; a run of at least ``reset_after_s`` starts the streak over at 0.2 s.

    The stable run is waited for on the supervisor's own uptime (the clock ``ran_for`` is measured
    with), not by sleeping a little longer than the window and hoping.
    """
    write_plugin(tmp_path / "plugins", "p")
    reset_after_s = 1.5
    backoff = {
        "initial_s": 0.2,
        "factor": 10,
        "max_s": 60,
        "jitter": 0,
        "reset_after_s": reset_after_s,
    }
    config = make_config(tmp_path / "plugins", tmp_path, backoff=backoff, max_crash_count=10)
    async with running_manager(nats_url, config) as h:
        supervisor = h.manager.supervisors["p"]
        await h.manager.start_plugin("p")

        async def crash_and_delay() -> float:
            mark = len(h.events.events)
            await h.command("p", "exit", "1")
            await h.events.wait("p", "crashed", after=mark)
            delay = h.manager.get_plugin_status("p")["next_restart_in"]
            assert delay is not None
            return float(delay)

        assert await crash_and_delay() == pytest.approx(0.2, abs=0.1)
        await supervisor.wait_for(lambda s: s.state.value == "running", timeout=20)
        assert await crash_and_delay() == pytest.approx(2.0, abs=0.2)
        await h.manager.start_plugin("p")  # skips the 2 s wait

        async def stable() -> bool:
            # uptime and the run's ran_for both count from ready_at on the monotonic clock, so
            # once uptime reaches the window, the crash below ends a run at least that long.
            return supervisor.uptime >= reset_after_s

        await eventually(stable, timeout=reset_after_s + 10, what="a run of reset_after_s")
        assert await crash_and_delay() == pytest.approx(0.2, abs=0.1)


async def test_exit_is_seen_at_once_without_waiting_for_a_health_check(
    nats_url: str, tmp_path: Path
) -> None:
    """Regression: exits were found by a pid poll every 30 s. Pings here are 10 min apart."""
    write_plugin(tmp_path / "plugins", "p", health={"interval_s": 600, "timeout_s": 5})
    async with running_manager(nats_url, make_config(tmp_path / "plugins", tmp_path)) as h:
        await h.manager.start_plugin("p")
        os.kill(h.pid("p"), signal.SIGKILL)
        crashed = await h.events.wait("p", "crashed", timeout=10)
        assert crashed["reason"] == "crashed (signal 9 (SIGKILL))"
        await h.events.wait("p", "running", after=3)


async def test_a_critical_plugin_that_ends_disabled_resolves_fatal(
    nats_url: str, tmp_path: Path
) -> None:
    write_plugin(tmp_path / "plugins", "core", critical=True, config={"exit_on_start": 1})
    write_plugin(tmp_path / "plugins", "extra")
    # Critical only because the operator's entry says so too (DESIGN 2.3).
    config = make_config(
        tmp_path / "plugins", tmp_path, max_crash_count=1, plugins={"core": {"critical": True}}
    )
    async with running_manager(nats_url, config) as h:
        await h.manager.start_all()
        async with asyncio.timeout(20):
            reason = await asyncio.shield(h.manager.fatal)
        assert reason.startswith("critical plugin core is disabled: disabled after 2 crashes")
        assert h.manager.get_plugin_status("extra")["state"] == "running"
