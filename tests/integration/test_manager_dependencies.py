"""Dependencies with real plugins: missing ones, cycles, start order, stop order, refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_manager_kit import make_config, running_manager, write_plugin

from rosey.errors import DependencyCycle, DependencyNotRunning, MissingDependency


async def test_a_missing_dependency_blocks_that_plugin_and_its_dependents_only(
    nats_url: str, tmp_path: Path
) -> None:
    """Regression: a missing dependency used to fall back to an arbitrary order for everyone."""
    plugins = tmp_path / "plugins"
    write_plugin(plugins, "needy", dependencies=["ghost"])
    write_plugin(plugins, "downstream", dependencies=["needy"])
    write_plugin(plugins, "base")
    write_plugin(plugins, "upper", dependencies=["base"])
    async with running_manager(nats_url, make_config(plugins, tmp_path)) as h:
        await h.manager.start_all()
        status = {s["name"]: s for s in h.manager.get_all_status()}
        assert status["base"]["state"] == "running"
        assert status["upper"]["state"] == "running"
        assert status["needy"]["state"] == "stopped"
        assert status["downstream"]["state"] == "stopped"
        assert "'ghost'" in status["needy"]["last_error"]
        assert "not installed" in status["needy"]["last_error"]
        assert "'needy'" in status["downstream"]["last_error"]
        assert "'ghost'" in status["downstream"]["last_error"]
        assert len(h.spawner.pids) == 2
        with pytest.raises(MissingDependency) as caught:
            await h.manager.start_plugin("needy")
        assert caught.value.code == "dependency"
        assert caught.value.missing == ["ghost"]
        assert "'ghost'" in (h.manager.unavailable_reason("needy") or "")


async def test_a_cycle_disables_the_plugins_on_it_and_the_others_start_in_order(
    nats_url: str, tmp_path: Path
) -> None:
    plugins = tmp_path / "plugins"
    write_plugin(plugins, "a", dependencies=["b"])
    write_plugin(plugins, "b", dependencies=["c"])
    write_plugin(plugins, "c", dependencies=["a"])
    write_plugin(plugins, "w", config={"start_delay_s": 0.3})
    write_plugin(plugins, "v", dependencies=["w"])
    async with running_manager(nats_url, make_config(plugins, tmp_path)) as h:
        await h.manager.start_all()
        for name, spelled in (
            ("a", "a → b → c → a"),
            ("b", "b → c → a → b"),
            ("c", "c → a → b → c"),
        ):
            status = h.manager.get_plugin_status(name)
            assert status["state"] == "disabled"
            assert status["enabled"] is False
            assert spelled in status["last_error"]
        assert h.manager.get_plugin_status("w")["state"] == "running"
        assert h.manager.get_plugin_status("v")["state"] == "running"
        await h.events.wait("v", "running")
        assert h.events.index("w", "running") < h.events.index("v", "starting")
        with pytest.raises(DependencyCycle):
            await h.manager.enable_plugin("a")


async def test_start_all_starts_independent_plugins_together_and_dependents_after(
    nats_url: str, tmp_path: Path
) -> None:
    plugins = tmp_path / "plugins"
    write_plugin(plugins, "one", config={"start_delay_s": 1.0})
    write_plugin(plugins, "two", config={"start_delay_s": 1.0})
    write_plugin(plugins, "both", dependencies=["one", "two"])
    write_plugin(plugins, "top", dependencies=["both"])
    async with running_manager(nats_url, make_config(plugins, tmp_path)) as h:
        await h.manager.start_all()
        assert {s["state"] for s in h.manager.get_all_status()} == {"running"}
        await h.events.wait("top", "running")
        ev = h.events
        # Both independent plugins were starting before either was ready: concurrently.
        assert max(ev.index("one", "starting"), ev.index("two", "starting")) < min(
            ev.index("one", "running"), ev.index("two", "running")
        )
        # A dependent starts only once every dependency is ready.
        assert ev.index("both", "starting") > max(
            ev.index("one", "running"), ev.index("two", "running")
        )
        assert ev.index("top", "starting") > ev.index("both", "running")


async def test_stop_plugin_stops_dependents_first_unless_told_not_to(
    nats_url: str, tmp_path: Path
) -> None:
    plugins = tmp_path / "plugins"
    write_plugin(plugins, "base")
    write_plugin(plugins, "mid", dependencies=["base"])
    write_plugin(plugins, "leaf", dependencies=["mid"])
    write_plugin(plugins, "other")
    async with running_manager(nats_url, make_config(plugins, tmp_path)) as h:
        await h.manager.start_all()
        mark = len(h.events.events)
        status = await h.manager.stop_plugin("base")
        assert status["state"] == "stopped"
        await h.events.wait("base", "stopped", after=mark)
        ev = h.events
        assert ev.index("leaf", "stopped", mark) < ev.index("mid", "stopping", mark)
        assert ev.index("mid", "stopped", mark) < ev.index("base", "stopping", mark)
        assert ev.events[ev.index("leaf", "stopping", mark)]["reason"] == (
            "its dependency base stops"
        )
        assert h.manager.get_plugin_status("other")["state"] == "running"

        await h.manager.start_all()
        mark = len(h.events.events)
        await h.manager.stop_plugin("mid", stop_dependents=False)
        assert h.manager.get_plugin_status("leaf")["state"] == "running"
        assert h.manager.get_plugin_status("base")["state"] == "running"


async def test_shutdown_stops_in_reverse_dependency_order(nats_url: str, tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    write_plugin(plugins, "base")
    write_plugin(plugins, "mid", dependencies=["base"])
    write_plugin(plugins, "leaf", dependencies=["mid"])
    async with running_manager(nats_url, make_config(plugins, tmp_path)) as h:
        await h.manager.start_all()
        mark = len(h.events.events)
        await h.manager.stop_all()
        await h.events.wait("base", "stopped", after=mark)
        ev = h.events
        assert ev.index("leaf", "stopped", mark) < ev.index("mid", "stopping", mark)
        assert ev.index("mid", "stopped", mark) < ev.index("base", "stopping", mark)
        assert {s["state"] for s in h.manager.get_all_status()} == {"stopped"}


async def test_starting_a_plugin_whose_dependency_is_not_running_is_refused(
    nats_url: str, tmp_path: Path
) -> None:
    plugins = tmp_path / "plugins"
    write_plugin(plugins, "base")
    write_plugin(plugins, "user", dependencies=["base"])
    config = make_config(plugins, tmp_path, plugins={"base": {"enabled": False}})
    async with running_manager(nats_url, config) as h:
        await h.manager.start_all()
        status = h.manager.get_plugin_status("user")
        assert status["state"] == "stopped"
        assert "needs 'base' running first, but it is disabled" in status["last_error"]
        with pytest.raises(DependencyNotRunning) as caught:
            await h.manager.start_plugin("user")
        assert caught.value.dependency == "base"
        assert caught.value.code == "dependency"
        assert h.spawner.pids == []

        await h.manager.enable_plugin("base")
        await h.manager.start_plugin("base")
        status = await h.manager.start_plugin("user")
        assert status["state"] == "running"
        assert status["last_error"] is None  # the dependency problem is over


async def test_dependents_wait_for_a_dependency_that_needs_a_restart_to_get_ready(
    nats_url: str, tmp_path: Path
) -> None:
    """start_all: a dependency whose first start fails but whose restart succeeds still gets
    its dependents started (they wait until it is ready or cannot become ready)."""
    plugins = tmp_path / "plugins"
    write_plugin(plugins, "flaky", config={"fail_first_start": True})
    write_plugin(plugins, "user", dependencies=["flaky"])
    async with running_manager(nats_url, make_config(plugins, tmp_path)) as h:
        await h.manager.start_all()
        assert h.manager.get_plugin_status("flaky")["state"] == "running"
        assert h.manager.get_plugin_status("flaky")["crash_count"] == 1
        assert h.manager.get_plugin_status("user")["state"] == "running"
