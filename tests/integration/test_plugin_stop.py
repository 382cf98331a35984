"""A plugin's own stop stays graceful while it is made cheap (issue 13, "stop all").

The runner ends the plugin process with ``os._exit`` as soon as the stop is done, without
``asyncio.run``'s teardown, and the bus's drain spends a round trip only when something was
published since the server last confirmed. What the plugin did must survive that: every message
it published in ``on_stop`` reaches a subscriber, a job it left with the default executor
finishes, a task of its own is cancelled (its ``finally`` runs), a signal that late does not
change the exit code (0). Both ways of starting a plugin (fork server, plain spawn) and both
ways of stopping it (a stop request, SIGTERM).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from helpers import wait_gone
from rosey.bus.client import EventBus, Message
from rosey.config import BotConfig, PluginOverride, RuntimeSettings
from rosey.manager.manager import PluginManager
from rosey.protocol import subjects

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "plugins"
COUNT = 300


@pytest.fixture(params=[True, False], ids=["forked", "spawned"])
def fork_server(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@pytest.fixture(params=[True, False], ids=["a task left", "nothing left"])
def task(request: pytest.FixtureRequest) -> bool:
    """Whether the plugin has a task of its own running when its stop is done, and a job in
    the executor (the runner closes the bus, cancels the task and waits for the job), or
    nothing (the runner ends at once, the loop not run again)."""
    return bool(request.param)


@pytest.fixture
async def manager(
    nats_url: str, tmp_path: Path, fork_server: bool, task: bool
) -> AsyncIterator[PluginManager]:
    bus = EventBus(nats_url, name="test-manager", inbox_prefix=subjects.MANAGER_INBOX_PREFIX)
    await bus.connect()
    job_s = 0.2 if task else None  # and a job left in the executor (the loop runs on)
    config = BotConfig(
        plugins_dir=[FIXTURES / "stop_probe"],
        state_dir=tmp_path / "state",
        runtime=RuntimeSettings(fork_server=fork_server),
        plugins={"stop_probe": PluginOverride(config={"task": task, "job_s": job_s})},
    )
    manager = PluginManager(config, nats_url=nats_url, bus=bus)
    pids: list[int] = []
    try:
        await manager.initialize()
        await manager.start_plugin("stop_probe")
        pids.append(manager.get_plugin_status("stop_probe")["stats"]["pid"])
        yield manager
    finally:
        await manager.shutdown()
        await bus.close()
        assert await wait_gone(pids, timeout=5) == []


@pytest.mark.parametrize("how", ["stop request", "SIGTERM"])
async def test_what_a_plugin_does_at_its_stop_survives_the_exit(
    manager: PluginManager, nats_url: str, how: str, task: bool
) -> None:
    received: list[int] = []
    all_in = asyncio.Event()

    async def on_bye(msg: Message) -> None:
        received.append(json.loads(msg.data)["seq"])
        if len(received) == COUNT:
            all_in.set()

    listener = EventBus(nats_url, name="test-listener")
    await listener.connect()
    try:
        await listener.subscribe(subjects.plugin_event("stop_probe", "bye"), on_bye)
        await listener.flush()
        pid = manager.get_plugin_status("stop_probe")["stats"]["pid"]
        if how == "SIGTERM":
            os.kill(pid, signal.SIGTERM)
            supervisor = manager.supervisors["stop_probe"]
            await supervisor.wait_for(lambda s: s.last_exit_code is not None, timeout=10)
        else:
            await manager.stop_plugin("stop_probe")
        assert await wait_gone([pid], timeout=5) == []
        # Published before the process ended: on the server already, on its way to us.
        await asyncio.wait_for(all_in.wait(), 10)
    finally:
        await listener.close()
    assert received == list(range(COUNT))
    assert manager.supervisors["stop_probe"].last_exit_code == 0
    data = manager.ctx.data_dir("stop_probe")
    assert (data / "executor_done").exists() is task
    assert (data / "task_cancelled").exists() is task


async def test_drain_leaves_what_was_published_with_the_server(nats_url: str) -> None:
    """The bus's drain with no subscription left: messages published just before it reach a
    subscriber on another connection, also when it leaves the connection open for the
    process's exit (``close=False``: the runner's); with a subscription left, its handler
    still finishes the message it was given (nats-py's drain)."""
    kinds = ("plain", "left-open", "subscribed")
    received: dict[str, list[int]] = {f"stop.test.{kind}": [] for kind in kinds}
    all_in = asyncio.Event()
    handled: list[object] = []
    started = asyncio.Event()

    async def on_message(msg: Message) -> None:
        received[msg.subject].append(msg.json()["seq"])
        if sum(map(len, received.values())) == len(kinds) * COUNT:
            all_in.set()

    async def slow_handler(msg: Message) -> None:
        started.set()
        await asyncio.sleep(0.2)
        handled.append(msg.json())

    listener = EventBus(nats_url, name="test-listener")
    await listener.connect()
    buses: list[EventBus] = []
    try:
        await listener.subscribe("stop.test.>", on_message)
        await listener.flush()
        for kind in kinds:
            bus = EventBus(nats_url, name=f"test-drain-{kind}")
            buses.append(bus)
            await bus.connect()
            if kind == "subscribed":
                await bus.subscribe("stop.slow", slow_handler)
                await bus.flush()
                await listener.publish("stop.slow", {"n": 1})
                await asyncio.wait_for(started.wait(), 10)
            for seq in range(COUNT):
                await bus.publish(f"stop.test.{kind}", {"seq": seq})
            await bus.drain(close=kind != "left-open")
            assert bus.is_connected is (kind == "left-open")
            assert bool(bus.tasks()) is (kind == "left-open")
        await asyncio.wait_for(all_in.wait(), 10)
    finally:
        for bus in buses:
            await bus.close()
        await listener.close()
    assert handled == [{"n": 1}]
    assert received == {subject: list(range(COUNT)) for subject in received}
