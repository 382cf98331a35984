"""Enable/disable choices survive restarts: in JetStream KV, or in a file without JetStream."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from test_manager_kit import make_config, running_manager, write_plugin

from rosey.bus.client import EventBus
from rosey.bus.kv import KeyValue
from rosey.bus.server import EmbeddedServer
from rosey.errors import NoResponders
from rosey.manager.desired import BUCKET, FILE_NAME


@pytest.fixture
async def plain_nats_url(tmp_path: Path) -> AsyncIterator[str]:
    """A real nats-server without JetStream."""
    server = EmbeddedServer(tmp_path / "plain-nats", jetstream=False)
    await server.start()
    try:
        yield server.url
    finally:
        await server.stop()


async def test_a_runtime_disable_survives_a_restart_in_the_kv_bucket(
    nats_url: str, tmp_path: Path
) -> None:
    plugins = tmp_path / "plugins"
    write_plugin(plugins, "alpha")
    write_plugin(plugins, "beta")
    config = make_config(plugins, tmp_path / "state")
    async with running_manager(nats_url, config) as h:
        await h.manager.start_all()
        status = await h.manager.disable_plugin("alpha")
        assert status["state"] == "disabled"
        assert status["stats"]["running"] is False
    assert not (tmp_path / "state" / FILE_NAME).exists()

    async with running_manager(nats_url, config) as h:
        await h.manager.start_all()
        status = h.manager.get_plugin_status("alpha")
        assert status["state"] == "disabled"
        assert "disabled by an operator (kept across restarts" in status["last_error"]
        assert h.manager.get_plugin_status("beta")["state"] == "running"
        await h.events.wait("alpha", "disabled")
        assert h.events.states("alpha") == ["disabled"]
        await h.manager.enable_plugin("alpha")

    async with running_manager(nats_url, config) as h:
        await h.manager.start_all()
        assert h.manager.get_plugin_status("alpha")["state"] == "running"

    bus = EventBus(nats_url, name="test-kv")
    await bus.connect()
    try:
        kv = await KeyValue.open(bus, BUCKET)
        stored = json.loads(await kv.get("desired_state") or b"{}")
    finally:
        await bus.close()
    assert stored["plugins"]["alpha"]["enabled"] is True


async def test_without_jetstream_the_choice_is_kept_in_a_file(
    plain_nats_url: str, tmp_path: Path
) -> None:
    plugins = tmp_path / "plugins"
    write_plugin(plugins, "alpha")
    config = make_config(plugins, tmp_path / "state")
    bus = EventBus(plain_nats_url, name="test-kv")
    await bus.connect()
    try:
        with pytest.raises(NoResponders):
            await KeyValue.open(bus, BUCKET)
    finally:
        await bus.close()

    async with running_manager(plain_nats_url, config) as h:
        await h.manager.disable_plugin("alpha")
    stored: dict[str, Any] = json.loads((tmp_path / "state" / FILE_NAME).read_text())
    assert stored["plugins"]["alpha"]["enabled"] is False
    assert (tmp_path / "state" / FILE_NAME).stat().st_mode & 0o777 == 0o600

    async with running_manager(plain_nats_url, config) as h:
        await h.manager.start_all()
        assert h.manager.get_plugin_status("alpha")["state"] == "disabled"
        assert h.spawner.pids == []


async def test_the_runtime_choice_overrides_the_config_until_either_changes(
    nats_url: str, tmp_path: Path
) -> None:
    """Manifest < config < persisted runtime choice; editing the config's enabled wins again."""
    plugins = tmp_path / "plugins"
    write_plugin(plugins, "alpha")
    state = tmp_path / "state"
    config_off = make_config(plugins, state, plugins={"alpha": {"enabled": False}})
    config_on = make_config(plugins, state, plugins={"alpha": {"enabled": True}})

    async def state_at_start(config: Any) -> str:
        async with running_manager(nats_url, config) as h:
            await h.manager.start_all()
            return str(h.manager.get_plugin_status("alpha")["state"])

    assert await state_at_start(config_off) == "disabled"  # the config says so
    async with running_manager(nats_url, config_off) as h:
        await h.manager.enable_plugin("alpha")  # the operator overrides it
    assert await state_at_start(config_off) == "running"  # ... across restarts
    async with running_manager(nats_url, config_off) as h:
        await h.manager.disable_plugin("alpha")  # changed again at runtime
    assert await state_at_start(config_off) == "disabled"

    async with running_manager(nats_url, config_on) as h:
        await h.manager.disable_plugin("alpha")  # made against enabled: true
    assert await state_at_start(config_on) == "disabled"
    # The operator edits the config: it wins over the older runtime choice, which is dropped.
    assert await state_at_start(config_off) == "disabled"
    assert await state_at_start(config_on) == "running"


async def test_enable_resets_the_crash_count_and_disabled_plugins_never_auto_start(
    nats_url: str, tmp_path: Path
) -> None:
    plugins = tmp_path / "plugins"
    write_plugin(plugins, "alpha", restart_policy="always")
    config = make_config(plugins, tmp_path / "state", max_crash_count=5)
    async with running_manager(nats_url, config) as h:
        await h.manager.start_all()
        for n in (1, 2):
            mark = len(h.events.events)
            await h.command("alpha", "exit", "1")
            await h.events.wait("alpha", "running", after=mark + 1)
            assert h.manager.get_plugin_status("alpha")["crash_count"] == n
        await h.manager.disable_plugin("alpha")
        await h.manager.start_all()
        assert h.manager.get_plugin_status("alpha")["state"] == "disabled"
        status = await h.manager.enable_plugin("alpha")
        assert status["crash_count"] == 0
        assert status["state"] == "stopped"
        assert status["last_error"] is None
        assert (await h.manager.start_plugin("alpha"))["state"] == "running"
