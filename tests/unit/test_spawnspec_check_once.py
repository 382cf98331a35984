"""``check_once``: the one-time probe of ``spawn_spec`` (can plugin uids run the runtime?) runs
in a thread before a start-all, so the first spawn finds it answered and does not block the
event loop (and every plugin starting with it) for the probe's ~0.1 s."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rosey.bus.client import EventBus
from rosey.config import BotConfig
from rosey.manager.context import ManagerContext
from rosey.manager.spawnspec import check_once
from rosey.sandbox import uids
from rosey.sandbox.process import PlainSpawner


def context(tmp_path: Path, plugin_uids: bool) -> ManagerContext:
    config = BotConfig.model_validate(
        {"state_dir": tmp_path / "state", "security": {"plugin_uids": plugin_uids}}
    )
    config.state_dir.mkdir(parents=True)
    bus = EventBus("nats://127.0.0.1:1", name="unused")  # never connected
    return ManagerContext(config, nats_url="nats://127.0.0.1:1", bus=bus, spawner=PlainSpawner())


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands out plugin uids")
async def test_the_uid_probe_is_answered_before_the_first_spawn(tmp_path: Path) -> None:
    ctx = context(tmp_path, plugin_uids=True)
    first, _ = ctx.config.security.plugin_uid_range
    key = (first, ctx.config.state_dir.resolve())
    uids.unavailable.cache_clear()
    await check_once(ctx)
    misses = uids.unavailable.cache_info().misses
    assert misses == 1
    uids.unavailable(*key)  # what spawn_spec asks: answered already
    assert uids.unavailable.cache_info().misses == misses


async def test_nothing_is_probed_without_plugin_uids(tmp_path: Path) -> None:
    ctx = context(tmp_path, plugin_uids=False)
    uids.unavailable.cache_clear()
    await check_once(ctx)
    assert uids.unavailable.cache_info().misses == 0
