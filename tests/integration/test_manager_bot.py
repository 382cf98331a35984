"""The manager inside a running bot (``rosey run`` as a real process)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from nats.aio.msg import Msg
from test_manager_kit import write_plugin

from botproc import run_bot
from helpers import wait_gone

FAST = """
max_crash_count: 1
backoff: {initial_s: 0, factor: 2, max_s: 0.5, jitter: 0, reset_after_s: 60}
"""


async def test_plugin_status_shows_why_a_crash_looping_plugin_is_disabled(tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    write_plugin(
        plugins,
        "broken",
        restart_policy="always",
        config={"exit_on_start": 3, "stderr": ["KeyError: 'api_token'"]},
    )
    write_plugin(plugins, "fine")
    async with run_bot(tmp_path, plugins_dirs=[plugins], config=FAST) as bot:
        assert bot.nc is not None
        states: asyncio.Queue[str] = asyncio.Queue()

        async def on_event(msg: Msg) -> None:
            await states.put(json.loads(msg.data)["state"])

        await bot.nc.subscribe("rosey.manager.events.broken", cb=on_event)
        await bot.nc.flush()
        reply = await bot.manage("status", {"plugin": "broken"})
        if reply["result"]["state"] != "disabled":  # still crash-looping: wait for the end
            async with asyncio.timeout(30):
                while await states.get() != "disabled":
                    pass
            reply = await bot.manage("status", {"plugin": "broken"})
        assert reply["ok"] is True, reply
        status = reply["result"]
        assert status["state"] == "disabled"
        assert status["crash_count"] == 2
        assert status["last_exit_code"] == 3
        assert "disabled after 2 crashes" in status["last_error"]
        assert "KeyError: 'api_token'" in status["last_error"]
        assert "disabled" in await bot.chat("!plugin status broken")
        fine = (await bot.manage("status", {"plugin": "fine"}))["result"]
        assert fine["state"] == "running"
        children = bot.descendants()
        assert await bot.terminate() == 0
        assert await wait_gone(children, timeout=10) == []


async def test_a_critical_plugin_that_ends_disabled_stops_the_bot_with_exit_1(
    tmp_path: Path,
) -> None:
    plugins = tmp_path / "plugins"
    write_plugin(plugins, "core", critical=True, config={"exit_on_start": 1})
    write_plugin(plugins, "fine")
    # Critical only because the operator says so too (a manifest alone cannot: DESIGN 2.3).
    config = FAST + "plugins: {core: {critical: true}}\n"
    async with run_bot(tmp_path, plugins_dirs=[plugins], config=config, ready=False) as bot:
        async with asyncio.timeout(60):
            code = await bot.proc.wait()
    log = "\n".join(bot.log)
    assert code == 1, log[-3000:]
    assert "critical plugin core is disabled: disabled after 2 crashes" in log
    assert not (bot.state_dir / "runtime.json").exists()
