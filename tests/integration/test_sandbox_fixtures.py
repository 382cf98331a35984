"""The fixture plugins do what tests/fixtures/plugins/README.md says (other suites rely on it).

Each is spawned plainly (no manager) against a real nats-server; commands are sent the way the
router sends them.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from test_sandbox import FIXTURES, make_spec

from helpers import chat_command, wait_gone
from rosey.bus.client import EventBus
from rosey.config import BotConfig
from rosey.errors import BusError
from rosey.manager import PluginManager
from rosey.protocol import subjects
from rosey.protocol.control import ControlMessage
from rosey.sandbox.confine import Sandbox
from rosey.sandbox.host import detect_host
from rosey.sandbox.process import PlainSpawner, PluginProcess


@pytest.fixture
async def bus(nats_url: str) -> AsyncIterator[EventBus]:
    async with EventBus(nats_url, name="fixture-test") as connected:
        yield connected


async def spawn(
    tmp_path: Path, nats_url: str, name: str, config: dict[str, Any] | None = None
) -> PluginProcess:
    return await PlainSpawner().spawn(make_spec(tmp_path, nats_url, name, config=config))


async def first_message(process: PluginProcess) -> ControlMessage:
    async with asyncio.timeout(20):
        message = await process.receive()
    assert message is not None, process.stderr_tail.lines()
    return message


async def command(bus: EventBus, plugin: str, name: str, timeout: float = 5.0) -> Any:
    reply = await bus.request(subjects.command_execute(plugin), chat_command(name), timeout=timeout)
    return reply.json()


async def test_crash_on_start_raises_in_on_start(nats_url: str, tmp_path: Path) -> None:
    process = await spawn(tmp_path, nats_url, "crash_on_start")
    try:
        message = await first_message(process)
        assert message["type"] == "failed"
        assert "on_start failed: RuntimeError" in message["error"]
        async with asyncio.timeout(10):
            assert await process.wait() == 1
    finally:
        await process.stop(0.5)


async def test_crash_on_start_exit_mode_exits_1_before_ready(nats_url: str, tmp_path: Path) -> None:
    process = await spawn(tmp_path, nats_url, "crash_on_start", {"mode": "exit"})
    try:
        async with asyncio.timeout(20):
            assert await process.wait() == 1
        assert await process.receive() is None  # no "ready", no "failed": just gone
    finally:
        await process.stop(0.5)


async def test_crash_on_command_exits_3(nats_url: str, tmp_path: Path, bus: EventBus) -> None:
    process = await spawn(tmp_path, nats_url, "crash_on_command")
    try:
        assert (await first_message(process))["type"] == "ready"
        assert (await command(bus, "crash_on_command", "alive"))["ok"] is True
        with pytest.raises(BusError):  # no reply: the process is gone
            await command(bus, "crash_on_command", "crash", timeout=2)
        async with asyncio.timeout(10):
            assert await process.wait() == 3
    finally:
        await process.stop(0.5)


async def test_exits_later_exits_0_on_its_own(nats_url: str, tmp_path: Path) -> None:
    process = await spawn(tmp_path, nats_url, "exits_later", {"after_s": 0.2})
    try:
        assert (await first_message(process))["type"] == "ready"
        async with asyncio.timeout(10):
            assert await process.wait() == 0
    finally:
        await process.stop(0.5)


async def test_blocks_loop_stops_answering_but_stays_alive(
    nats_url: str, tmp_path: Path, bus: EventBus
) -> None:
    process = await spawn(tmp_path, nats_url, "blocks_loop")
    try:
        assert (await first_message(process))["type"] == "ready"
        assert (await command(bus, "blocks_loop", "ping"))["text"] == "pong"
        with pytest.raises(BusError):
            await command(bus, "blocks_loop", "block", timeout=1)
        with pytest.raises(BusError):
            await bus.request(subjects.health_ping("blocks_loop"), {}, timeout=1)
        assert process.returncode is None
    finally:
        await process.stop(0.5)
    assert await wait_gone([process.pid], timeout=5) == []


async def test_manager_stops_the_sigterm_ignorer_within_stop_timeout_plus_one_second(
    nats_url: str, tmp_path: Path
) -> None:
    """The whole path: manager → supervisor → sandboxed process → escalation to SIGKILL."""
    config = BotConfig(plugins_dir=[FIXTURES / "ignores_sigterm"], state_dir=tmp_path / "state")
    box = Sandbox(detect_host(), family=f"test{uuid.uuid4().hex[:10]}")
    box.open()
    try:
        async with EventBus(nats_url, name="manager") as manager_bus:
            manager = PluginManager(
                config, nats_url=nats_url, bus=manager_bus, spawner=box.spawner()
            )
            await manager.initialize()
            try:
                status = await manager.start_plugin("ignores_sigterm")
                pid = status["stats"]["pid"]
                assert "rlimit" in manager.supervisors["ignores_sigterm"].layers
                started = time.monotonic()
                status = await manager.stop_plugin("ignores_sigterm")
                elapsed = time.monotonic() - started
                assert status["state"] == "stopped"
                assert elapsed < 2.0 + 1.0, f"stop took {elapsed:.2f} s"
            finally:
                await manager.shutdown()
        assert await wait_gone([pid], timeout=5) == []
    finally:
        box.close()


async def test_forged_control_lines_reach_the_manager_only_as_escaped_notes(
    nats_url: str, tmp_path: Path
) -> None:
    """Plugin code can write its end of the control channel (``forged_control`` does, with
    terminal escapes and a newline that would forge a log line): a line that is no message
    becomes ``invalid`` with a bounded note that is safe to log, and the forged ``failed``
    that follows arrives as a message whose text the manager cleans before showing it
    (``tests/integration/test_security_output.py`` checks that half)."""
    process = await spawn(tmp_path, nats_url, "forged_control")
    try:
        message = await first_message(process)
        assert message["type"] == "invalid"
        assert "not json" in message["raw"]
        assert "\x1b" not in message["raw"]
        assert "\x9b" not in message["raw"]
        assert "\n" not in message["raw"]
        assert "\u202e" not in message["raw"]
        assert (await first_message(process))["type"] == "failed"
    finally:
        await process.stop(0.5)
