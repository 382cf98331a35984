"""The SDK answers only reply subjects of the kinds the core and granted callers use.

Without accounts (an external server, or the broker layer off), a requester picks any reply
subject; a callee that answered ``rosey.manager.stop`` would publish there and take the blame
for the refusal. This layer holds on its own, whatever the broker does.
"""

from __future__ import annotations

import json
from pathlib import Path

import nats
from nats.aio.msg import Msg

from rosey.bus.client import EventBus
from rosey.protocol import subjects
from rosey.sdk import CommandContext, Plugin, command
from rosey.sdk.runtime import PluginRuntime

FORGED = [
    "rosey.manager.stop",
    "rosey.commands.dice.execute",
    "rosey.security.violation",
    "$KV.ROSEY_MANAGER.desired_state",
    "_INBOXES.plain",
]


class Echo(Plugin):
    @command("whoami")
    async def whoami(self, ctx: CommandContext) -> str:
        return f"{ctx.user.username} on {ctx.platform}"


def _request(correlation: str) -> bytes:
    return json.dumps(
        {
            "command": "whoami",
            "args": [],
            "text": "!whoami",
            "user": {"username": "ann", "rank": 0},
            "channel": "c",
            "platform": "test",
            "correlation_id": correlation,
        }
    ).encode()


async def test_a_callee_ignores_requests_whose_reply_subject_is_not_an_inbox(
    nats_url: str, tmp_path: Path
) -> None:
    """Regression: a caller sent requests with reply subject ``rosey.manager.stop``; the callee
    answered there and was disabled for the broker's refusals."""
    bus = EventBus(nats_url, name="plugin:echo", inbox_prefix=subjects.plugin_inbox_prefix("echo"))
    await bus.connect()
    runtime = PluginRuntime(Echo("echo", {}, tmp_path), bus)
    spy = await nats.connect(nats_url, inbox_prefix=subjects.ROUTER_INBOX_PREFIX)
    landed: list[Msg] = []

    async def seen(msg: Msg) -> None:
        landed.append(msg)

    try:
        await runtime.start()
        for target in FORGED:
            await spy.subscribe(target, cb=seen)
        await spy.flush()
        for target in FORGED:
            await spy.publish(subjects.command_execute("echo"), _request("forged"), reply=target)
            await spy.publish(subjects.health_ping("echo"), b"{}", reply=target)
        # Real requests, after the forged ones: the kinds the core and callers use get answers.
        answer = await spy.request(subjects.command_execute("echo"), _request("ok"), timeout=5)
        assert json.loads(answer.data)["text"] == "ann on test"
        ping = await spy.request(subjects.health_ping("echo"), b"{}", timeout=5)
        assert json.loads(ping.data)["ok"] is True
        assert [m.subject for m in landed] == []
        assert runtime.refused_replies == 2 * len(FORGED)
        assert runtime.commands_handled == 1
    finally:
        await spy.close()
        await runtime.stop(timeout=2)
