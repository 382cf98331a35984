"""The SDK runner in a real plugin process: errors, graceful stop, secrets, hardening."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from helpers import eventually, wait_gone
from rosey.bus.client import EventBus
from rosey.config import BotConfig
from rosey.manager.manager import PluginManager
from rosey.protocol import subjects, wire

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "plugins"


@pytest.fixture
async def manager(nats_url: str, tmp_path: Path) -> AsyncIterator[PluginManager]:
    bus = EventBus(nats_url, name="test-manager", inbox_prefix=subjects.MANAGER_INBOX_PREFIX)
    await bus.connect()
    config = BotConfig(plugins_dir=[FIXTURES / "sdk_probe"], state_dir=tmp_path / "state")
    manager = PluginManager(config, nats_url=nats_url, bus=bus)
    pids: list[int] = []
    try:
        await manager.initialize()
        await manager.start_plugin("sdk_probe")
        pids.append(manager.get_plugin_status("sdk_probe")["stats"]["pid"])
        yield manager
    finally:
        await manager.shutdown()
        await bus.close()
        assert await wait_gone(pids, timeout=5) == []


async def ask(bus: EventBus, command: str, *args: str, timeout: float = 5) -> wire.CommandReply:
    request: wire.CommandRequest = {
        "command": command,
        "args": list(args),
        "text": f"!{command}",
        "user": {"username": "t", "rank": 0},
        "channel": "c",
        "platform": "test",
        "correlation_id": "x",
    }
    subject = subjects.command_execute("sdk_probe")
    reply = await bus.request(subject, request, timeout=timeout)
    return wire.parse_command_reply(subject, reply.data)


async def test_handler_exception_is_a_short_error_reply_and_counted(manager: PluginManager) -> None:
    bus = manager.bus
    reply = await ask(bus, "boom")
    assert reply["ok"] is False
    assert reply["error"] == "!boom failed: ValueError"
    assert "secret internals" not in json.dumps(reply)
    assert (await ask(bus, "slow", "0"))["text"] == "slow 0 done"
    health = await manager.health_check_plugin("sdk_probe")
    assert health["errors"] == 1
    assert health["commands"] == 2
    log_text = manager.ctx.log_path("sdk_probe").read_text()
    assert "secret internals that users must not see" in log_text  # the traceback goes to the log


@pytest.mark.parametrize("how", ["stop request", "SIGTERM"])
async def test_in_flight_commands_finish_before_exit(manager: PluginManager, how: str) -> None:
    status = manager.get_plugin_status("sdk_probe")
    pid = status["stats"]["pid"]
    pending = [asyncio.ensure_future(ask(manager.bus, "slow", "0.8", str(i))) for i in range(30)]

    # Every request must be inside the plugin before we stop it.
    async def all_inside() -> bool:
        return (await manager.health_check_plugin("sdk_probe")).get("in_flight") == 30

    await eventually(all_inside, 5, "30 commands in flight in the plugin")
    if how == "SIGTERM":
        os.kill(pid, signal.SIGTERM)
        supervisor = manager.supervisors["sdk_probe"]
        await supervisor.wait_for(lambda s: s.last_exit_code is not None, timeout=10)
    else:
        await manager.stop_plugin("sdk_probe")
    replies = await asyncio.gather(*pending)
    assert [r["text"] for r in replies] == [f"slow 0.8 {i} done" for i in range(30)]
    assert manager.supervisors["sdk_probe"].last_exit_code == 0
    assert (manager.ctx.data_dir("sdk_probe") / "on_stop_ran").read_text() == "yes"
    assert await wait_gone([pid], timeout=5) == []


async def test_process_is_hardened_and_holds_no_secrets_in_argv_or_env(
    manager: PluginManager,
) -> None:
    info = json.loads((await ask(manager.bus, "whoami"))["text"] or "{}")
    assert info["dumpable"] == 0
    assert info["sid"] == info["pid"]  # its own session
    assert info["cwd"] == str(manager.ctx.data_dir("sdk_probe"))
    env = json.loads((await ask(manager.bus, "environ"))["text"] or "{}")
    assert set(env) <= {
        "PATH",
        "LANG",
        "LC_ALL",
        "LC_CTYPE",
        "TZ",
        "PYTHONPATH",
        "HOME",
        "TMPDIR",
        "PYTHONUNBUFFERED",
        "ROSEY_PLUGIN",
    }
    assert not any("password" in arg.lower() or "nats://" in arg for arg in info["argv"])
    assert "nats://" not in json.dumps(env)
