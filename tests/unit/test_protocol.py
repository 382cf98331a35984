"""Subject builders and the wire codec: tables of good and bad input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rosey.errors import DecodeError, SubjectError
from rosey.protocol import subjects, wire


@pytest.mark.parametrize(
    ("built", "expected"),
    [
        (subjects.platform_send("console"), "rosey.platform.console.send"),
        (subjects.command_execute("dice"), "rosey.commands.dice.execute"),
        (subjects.command_result("dice"), "rosey.commands.dice.result"),
        (subjects.command_error("dice"), "rosey.commands.dice.error"),
        (subjects.plugin_event("trivia", "round.started"), "rosey.plugins.trivia.round.started"),
        (subjects.manager_action("list"), "rosey.manager.list"),
        (subjects.manager_events("dice"), "rosey.manager.events.dice"),
        (subjects.health_ping("dice"), "rosey.health.dice.ping"),
    ],
)
def test_builders(built: str, expected: str) -> None:
    assert built == expected


@pytest.mark.parametrize("bad", ["", "a.b", "a*", ">", "a b", "tab\there", "new\nline"])
def test_bad_tokens_are_refused_with_the_reason(bad: str) -> None:
    with pytest.raises(SubjectError, match="subject token"):
        subjects.command_execute(bad)
    with pytest.raises(SubjectError):
        subjects.platform_send(bad)


def test_dotted_event_parts_are_checked_each() -> None:
    with pytest.raises(SubjectError, match="event name part"):
        subjects.plugin_event("trivia", "round.*")


@given(st.text(min_size=1, max_size=20))
def test_any_accepted_token_is_exactly_one_token(value: str) -> None:
    try:
        subject = subjects.command_execute(value)
    except SubjectError:
        return
    assert subject.split(".") == ["rosey", "commands", value, "execute"]


CHAT = {
    "id": "1",
    "platform": "test",
    "channel": "c",
    "user": {"username": "ann", "rank": 2},
    "text": "!roll 1d6",
    "timestamp": 5,
}


def test_chat_message_roundtrip() -> None:
    parsed = wire.parse_chat_message("s", wire.encode(CHAT))
    assert parsed == {**CHAT, "timestamp": 5.0}


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"\xff", "not UTF-8 JSON"),
        (b"{", "not UTF-8 JSON"),
        (b"[]", "must be a JSON object, got list"),
        (wire.encode({k: v for k, v in CHAT.items() if k != "text"}), "'text' is missing"),
        (wire.encode({**CHAT, "text": 3}), "'text' must be str, got int"),
        (wire.encode({**CHAT, "user": "ann"}), "'user' must be dict"),
        (wire.encode({**CHAT, "user": {"username": "a", "rank": True}}), "user.rank"),
        (wire.encode({**CHAT, "timestamp": "now"}), "'timestamp' must be a number"),
    ],
)
def test_bad_chat_messages_name_the_problem(body: bytes, problem: str) -> None:
    with pytest.raises(DecodeError, match=problem) as info:
        wire.parse_chat_message("rosey.events.message", body)
    assert "rosey.events.message" in str(info.value)


def test_command_request_and_reply() -> None:
    request = {
        "command": "roll",
        "args": ["1d6"],
        "text": "!roll 1d6",
        "user": {"username": "ann", "rank": 0},
        "channel": "c",
        "platform": "test",
        "correlation_id": "x",
    }
    assert wire.parse_command_request("s", wire.encode(request)) == request
    with pytest.raises(DecodeError, match="list of strings"):
        wire.parse_command_request("s", wire.encode({**request, "args": [1]}))
    reply = wire.parse_command_reply("s", b'{"ok": true, "text": "4"}')
    assert reply == {"ok": True, "text": "4", "data": None, "error": None}
    with pytest.raises(DecodeError, match="'ok' must be bool"):
        wire.parse_command_reply("s", b'{"ok": 1}')
    with pytest.raises(DecodeError, match="'text' must be a string or null"):
        wire.parse_command_reply("s", b'{"ok": true, "text": 4}')


def test_send_message() -> None:
    assert wire.parse_send_message("s", b'{"channel": "c", "text": "t"}') == {
        "channel": "c",
        "text": "t",
        "in_reply_to": None,
    }
    with pytest.raises(DecodeError, match="in_reply_to"):
        wire.parse_send_message("s", b'{"channel": "c", "text": "t", "in_reply_to": 1}')
