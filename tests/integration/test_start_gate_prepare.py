"""A plugin waiting for a start slot readies its data folder meanwhile.

Starting is gated (``rosey.manager.gate``: a few plugins in spawn→ready at once); a cold data
folder (a quota image to create and mount) is processes to wait for, not CPU, so a plugin
that has to wait for a slot prepares it first (``PluginLife._ready_folder_ahead``) and its
spawn finds it ready. With a free slot nothing changes: it is prepared by the spawn alone.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from test_manager_kit import make_config, write_plugin

from helpers import wait_gone
from rosey.bus.client import EventBus
from rosey.lifecycle.states import State
from rosey.manager.gate import StartGate
from rosey.manager.manager import PluginManager
from rosey.protocol import subjects
from rosey.sandbox.process import PlainSpawner, SpawnSpec


class Folders:
    """The ``prepare`` hook of the spawner: makes the folder and counts the calls."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.lock = threading.Lock()
        self.loop = asyncio.get_running_loop()
        self.called = asyncio.Event()

    def __call__(self, spec: SpawnSpec) -> None:  # in a worker thread
        spec.data_dir.mkdir(parents=True, exist_ok=True)
        with self.lock:
            self.calls.append(spec.name)
        self.loop.call_soon_threadsafe(self.called.set)


@pytest.fixture
async def manager(nats_url: str, tmp_path: Path) -> AsyncIterator[tuple[PluginManager, Folders]]:
    write_plugin(tmp_path / "plugins", "waiter")
    folders = Folders()
    bus = EventBus(nats_url, name="test-manager", inbox_prefix=subjects.MANAGER_INBOX_PREFIX)
    await bus.connect()
    config = make_config(tmp_path / "plugins", tmp_path / "state")
    manager = PluginManager(
        config, nats_url=nats_url, bus=bus, spawner=PlainSpawner(prepare=folders)
    )
    manager.ctx.start_gate = StartGate(slots=1)
    pids: list[int] = []
    try:
        await manager.initialize()
        yield manager, folders
        pid = manager.supervisors["waiter"].pid
        pids += [pid] if pid else []
    finally:
        await manager.shutdown()
        await bus.close()
        assert await wait_gone(pids, timeout=5) == []


async def test_a_start_waiting_for_a_slot_prepares_its_folder_first(
    manager: tuple[PluginManager, Folders],
) -> None:
    mgr, folders = manager
    supervisor = mgr.supervisors["waiter"]
    gate = mgr.ctx.start_gate
    async with gate.slot():  # every slot taken (by "another plugin")
        assert gate.full
        starting = asyncio.create_task(mgr.start_plugin("waiter"))
        await asyncio.wait_for(folders.called.wait(), 10)
        assert folders.calls == ["waiter"]
        assert supervisor.state is State.STARTING
        assert supervisor.pid is None  # prepared, not spawned: no slot yet
    await asyncio.wait_for(starting, 30)
    assert mgr.get_plugin_status("waiter")["state"] == "running"
    assert folders.calls == ["waiter", "waiter"]  # the spawn's own prepare: finds it ready


async def test_with_a_free_slot_only_the_spawn_prepares(
    manager: tuple[PluginManager, Folders],
) -> None:
    mgr, folders = manager
    await asyncio.wait_for(mgr.start_plugin("waiter"), 30)
    assert folders.calls == ["waiter"]
