"""Message bodies of DESIGN 2.4 and the one JSON codec for them.

Receivers parse bodies with the ``parse_*`` functions, which check the fields they rely on and
raise ``DecodeError`` naming the subject and the problem; a bad message is then logged and
counted by the bus, never allowed to kill a subscription. Standard library only: plugin
processes import this.
"""

from __future__ import annotations

import json
import time
from typing import Any, Literal, NotRequired, TypedDict

from rosey.errors import DecodeError


class ChatUser(TypedDict):
    username: str
    rank: int


class ChatMessage(TypedDict):
    """``rosey.events.message``: a line someone wrote in a chat."""

    id: str
    platform: str
    channel: str
    user: ChatUser
    text: str
    timestamp: float


class SendMessage(TypedDict):
    """``rosey.platform.<platform>.send``: a line a connector must post."""

    channel: str
    text: str
    in_reply_to: str | None


class CommandRequest(TypedDict):
    """``rosey.commands.<plugin>.execute`` request."""

    command: str
    args: list[str]
    text: str
    user: ChatUser
    channel: str
    platform: str
    correlation_id: str


class CommandReply(TypedDict):
    """``rosey.commands.<plugin>.execute`` reply."""

    ok: bool
    text: str | None
    data: Any
    error: str | None


class CommandOutcome(TypedDict):
    """``rosey.commands.<plugin>.result`` / ``.error``, published by the router."""

    command: str
    correlation_id: str
    duration_ms: float
    error: str | None


class ManagerEvent(TypedDict):
    """``rosey.manager.events.<plugin>``: one state transition."""

    plugin: str
    state: str
    previous: str
    reason: str
    timestamp: float


class SecurityViolation(TypedDict):
    """``rosey.security.violation``."""

    plugin: str
    kind: str
    subject: str
    detail: str
    timestamp: float


class ApiError(TypedDict):
    code: Literal[
        "not_found", "invalid_state", "dependency", "forbidden", "bad_request", "internal"
    ]
    message: str


class ApiReply(TypedDict):
    """Envelope of every ``rosey.manager.<action>`` reply (DESIGN 2.6)."""

    ok: bool
    result: NotRequired[Any]
    error: NotRequired[ApiError]


def encode(body: Any) -> bytes:
    """The one codec: compact UTF-8 JSON."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def decode(subject: str, data: bytes) -> Any:
    """Parse a body as JSON, or raise ``DecodeError`` naming the subject."""
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DecodeError(subject, f"body is not UTF-8 JSON ({exc})") from None


def decode_object(subject: str, data: bytes) -> dict[str, Any]:
    body = decode(subject, data)
    if not isinstance(body, dict):
        raise DecodeError(subject, f"body must be a JSON object, got {type(body).__name__}")
    return body


def _field(subject: str, body: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    if name not in body:
        raise DecodeError(subject, f"field {name!r} is missing")
    value = body[name]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        want = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise DecodeError(subject, f"field {name!r} must be {want}, got {type(value).__name__}")
    return value


def _user(subject: str, body: dict[str, Any]) -> ChatUser:
    user = _field(subject, body, "user", dict)
    username = _field(subject, user, "username", str)
    rank = user.get("rank", 0)
    if not isinstance(rank, int) or isinstance(rank, bool):
        raise DecodeError(subject, "field 'user.rank' must be an integer")
    return {"username": username, "rank": rank}


def parse_chat_message(subject: str, data: bytes) -> ChatMessage:
    body = decode_object(subject, data)
    timestamp = body.get("timestamp", time.time())
    if not isinstance(timestamp, int | float) or isinstance(timestamp, bool):
        raise DecodeError(subject, "field 'timestamp' must be a number")
    return {
        "id": str(_field(subject, body, "id", (str, int))),
        "platform": _field(subject, body, "platform", str),
        "channel": _field(subject, body, "channel", str),
        "user": _user(subject, body),
        "text": _field(subject, body, "text", str),
        "timestamp": float(timestamp),
    }


def parse_command_request(subject: str, data: bytes) -> CommandRequest:
    body = decode_object(subject, data)
    args = _field(subject, body, "args", list)
    if not all(isinstance(a, str) for a in args):
        raise DecodeError(subject, "field 'args' must be a list of strings")
    return {
        "command": _field(subject, body, "command", str),
        "args": args,
        "text": _field(subject, body, "text", str),
        "user": _user(subject, body),
        "channel": _field(subject, body, "channel", str),
        "platform": _field(subject, body, "platform", str),
        "correlation_id": _field(subject, body, "correlation_id", str),
    }


def parse_command_reply(subject: str, data: bytes) -> CommandReply:
    body = decode_object(subject, data)
    text = body.get("text")
    error = body.get("error")
    if text is not None and not isinstance(text, str):
        raise DecodeError(subject, "field 'text' must be a string or null")
    if error is not None and not isinstance(error, str):
        raise DecodeError(subject, "field 'error' must be a string or null")
    return {
        "ok": _field(subject, body, "ok", bool),
        "text": text,
        "data": body.get("data"),
        "error": error,
    }


def parse_send_message(subject: str, data: bytes) -> SendMessage:
    body = decode_object(subject, data)
    in_reply_to = body.get("in_reply_to")
    if in_reply_to is not None and not isinstance(in_reply_to, str):
        raise DecodeError(subject, "field 'in_reply_to' must be a string or null")
    return {
        "channel": _field(subject, body, "channel", str),
        "text": _field(subject, body, "text", str),
        "in_reply_to": in_reply_to,
    }
