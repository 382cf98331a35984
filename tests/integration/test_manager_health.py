"""Health with real processes: pings, a blocked event loop, resource limits, the error rate."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

from test_manager_kit import make_config, running_manager, write_plugin

from rosey.bus.client import EventBus, Message
from rosey.protocol import subjects, wire
from rosey.router.router import Router
from rosey.sandbox.process import PlainSpawner

#: Slack for a loaded two-core machine on top of a bound the design promises.
SLACK_S = 2.5


async def test_a_blocked_event_loop_is_restarted_within_interval_times_threshold_plus_timeout(
    nats_url: str, tmp_path: Path
) -> None:
    """Regression: health was only "is the pid alive", so a hung plugin stayed up forever."""
    health = {"interval_s": 0.5, "timeout_s": 0.5, "failure_threshold": 2}
    write_plugin(tmp_path / "plugins", "hung", health=health)
    async with running_manager(nats_url, make_config(tmp_path / "plugins", tmp_path)) as h:
        await h.manager.start_plugin("hung")
        reply = await h.command("hung", "whoami")
        first_pid = int(reply["text"])
        blocked_at = time.time()
        task = asyncio.create_task(h.command("hung", "block"))  # never answered
        unhealthy = await h.events.wait("hung", "unhealthy")
        crashed = await h.events.wait("hung", "crashed")
        task.cancel()
        bound = 0.5 * 2 + 0.5
        assert crashed["timestamp"] - blocked_at <= bound + SLACK_S
        assert unhealthy["previous"] == "running"
        assert "health check failed 2 times in a row" in crashed["reason"]
        await h.events.wait("hung", "running", after=h.events.index("hung", "crashed"))
        status = h.manager.get_plugin_status("hung")
        assert status["state"] == "running"
        assert status["stats"]["pid"] != first_pid
        assert status["crash_count"] == 1
        assert "no answer to a ping within 0.5 s" in status["last_error"]


async def test_pings_that_pass_again_bring_it_back_to_running(
    nats_url: str, tmp_path: Path
) -> None:
    health = {"interval_s": 0.5, "timeout_s": 0.5, "failure_threshold": 4}
    write_plugin(tmp_path / "plugins", "wobbly", health=health)
    async with running_manager(nats_url, make_config(tmp_path / "plugins", tmp_path)) as h:
        await h.manager.start_plugin("wobbly")
        # Blocked for 1.2 s: at least one ping goes unanswered, far fewer than four.
        assert (await h.command("wobbly", "block", "1.2"))["text"] == "unblocked"
        unhealthy = await h.events.wait("wobbly", "unhealthy")
        assert "health check failed 1 time(s) in a row" in unhealthy["reason"]
        recovered = await h.events.wait(
            "wobbly", "running", after=h.events.index("wobbly", "unhealthy")
        )
        assert recovered["previous"] == "unhealthy"
        assert recovered["reason"] == "health checks pass again"
        status = h.manager.get_plugin_status("wobbly")
        assert status["state"] == "running"
        assert status["crash_count"] == 0


async def test_health_checks_of_different_plugins_never_wait_on_each_other(
    nats_url: str, tmp_path: Path
) -> None:
    """A plugin whose pings hang for 5 s each does not delay a fast plugin's verdict."""
    plugins = tmp_path / "plugins"
    write_plugin(
        plugins,
        "slowpoke",
        health={"interval_s": 0.2, "timeout_s": 5, "failure_threshold": 50},
        stop_timeout_s=0.5,
    )
    write_plugin(
        plugins, "quick", health={"interval_s": 0.3, "timeout_s": 0.3, "failure_threshold": 2}
    )
    async with running_manager(nats_url, make_config(plugins, tmp_path)) as h:
        await h.manager.start_all()
        hang = asyncio.create_task(h.command("slowpoke", "block", "30", timeout=40))
        await h.events.wait("slowpoke", "unhealthy", timeout=15)
        blocked_at = time.time()
        quick = asyncio.create_task(h.command("quick", "block"))
        crashed = await h.events.wait("quick", "crashed")
        assert crashed["timestamp"] - blocked_at <= 0.3 * 2 + 0.3 + SLACK_S
        assert h.manager.get_plugin_status("slowpoke")["state"] == "unhealthy"
        for task in (hang, quick):
            task.cancel()


async def test_a_resource_limit_makes_it_unhealthy_and_restarted_if_it_persists(
    nats_url: str, tmp_path: Path
) -> None:
    """psutil sampling, the last line behind the kernel's limits (none here: a plain spawn)."""
    write_plugin(
        tmp_path / "plugins",
        "hog",
        health={"interval_s": 0.3, "timeout_s": 2, "failure_threshold": 3},
        limits={"memory_mb": 120},
    )
    config = make_config(tmp_path / "plugins", tmp_path)
    async with running_manager(nats_url, config, spawner=PlainSpawner()) as h:
        await h.manager.start_plugin("hog")
        first_pid = h.pid("hog")
        assert h.manager.get_plugin_status("hog")["stats"]["memory_mb"] < 120
        await h.command("hog", "hog", "200")
        unhealthy = await h.events.wait("hog", "unhealthy")
        assert "memory limit 120 MB exceeded" in unhealthy["reason"]
        crashed = await h.events.wait("hog", "crashed")
        assert "in 3 samples in a row" in crashed["reason"]
        await h.events.wait("hog", "running", after=h.events.index("hog", "crashed"))
        status = h.manager.get_plugin_status("hog")
        assert status["stats"]["pid"] != first_pid
        assert "memory limit 120 MB exceeded" in status["last_error"]


async def _chat(bus: EventBus, replies: asyncio.Queue[str], text: str) -> str:
    message: wire.ChatMessage = {
        "id": uuid.uuid4().hex,
        "platform": "test",
        "channel": "room",
        "user": {"username": "tester", "rank": 0},
        "text": text,
        "timestamp": time.time(),
    }
    await bus.publish(subjects.EVENTS_MESSAGE, message)
    async with asyncio.timeout(10):
        return await replies.get()


async def test_an_error_rate_above_half_makes_it_unhealthy_and_shows_in_status(
    nats_url: str, tmp_path: Path
) -> None:
    """Commands go through the real router, which publishes rosey.commands.<p>.result|error."""
    write_plugin(tmp_path / "plugins", "shaky", commands=["ok", "fail"])
    config = make_config(
        tmp_path / "plugins", tmp_path, error_rate={"window_s": 60, "min_commands": 4}
    )
    async with running_manager(nats_url, config) as h:
        await h.manager.start_plugin("shaky")
        router_bus = EventBus(nats_url, name="test-router", inbox_prefix="_INBOX_ROUTER")
        await router_bus.connect()
        router = Router(router_bus, h.manager)
        replies: asyncio.Queue[str] = asyncio.Queue()

        async def on_reply(msg: Message) -> None:
            await replies.put(msg.json()["text"])

        await h.client.subscribe(subjects.platform_send("test"), on_reply)
        await h.client.flush()
        await router.start()
        try:
            # One failure of one command (or of three) is not enough to flap.
            assert "failed" in await _chat(h.client, replies, "!fail")
            assert h.manager.get_plugin_status("shaky")["state"] == "running"
            await _chat(h.client, replies, "!ok")
            await _chat(h.client, replies, "!fail")
            await _chat(h.client, replies, "!fail")  # 3 of 4 failed: 75 %
            unhealthy = await h.events.wait("shaky", "unhealthy")
            assert "error rate 75%" in unhealthy["reason"]
            status = h.manager.get_plugin_status("shaky")
            assert status["state"] == "unhealthy"
            assert status["error_rate"] == 0.75
            assert "3 of 4 commands failed" in status["last_error"]
            assert (await h.command("shaky", "ok"))["text"] == "ok"  # unhealthy, not restarted
            for _ in range(2):
                await _chat(h.client, replies, "!ok")  # 3 of 6: not above half
            recovered = await h.events.wait(
                "shaky", "running", after=h.events.index("shaky", "unhealthy")
            )
            assert recovered["previous"] == "unhealthy"
            assert h.manager.get_plugin_status("shaky")["error_rate"] == 0.5
        finally:
            await router.stop()
            await router_bus.close()
