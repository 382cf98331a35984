"""``wire.command_request``: the one place a ``rosey.commands.<plugin>.execute`` body is built
(issue 11: it was built by the router, the SDK's ``call``, the test harness and the relay)."""

from __future__ import annotations

from rosey.protocol import wire


def test_a_chat_command_keeps_what_was_typed() -> None:
    request = wire.command_request(
        "roll",
        ("2d6",),
        text="!roll  2d6",
        user={"username": "alice", "rank": 1},
        channel="#main",
        platform="cytube",
        correlation_id="r-1",
    )
    assert request == {
        "command": "roll",
        "args": ["2d6"],
        "text": "!roll  2d6",
        "user": {"username": "alice", "rank": 1},
        "channel": "#main",
        "platform": "cytube",
        "correlation_id": "r-1",
    }


def test_a_plugin_call_is_the_core_platform_and_rank_zero() -> None:
    request = wire.plugin_call_request("plugin:quotes", "roll", ["1d20"], correlation_id="c-1")
    assert request == {
        "command": "roll",
        "args": ["1d20"],
        "text": "!roll 1d20",
        "user": {"username": "plugin:quotes", "rank": 0},
        "channel": "",
        "platform": wire.PLUGIN_PLATFORM,
        "correlation_id": "c-1",
    }
    # What a parser on the plugin side reads back is the same request.
    subject = "rosey.commands.dice.execute"
    assert wire.parse_command_request(subject, wire.encode(request)) == request
