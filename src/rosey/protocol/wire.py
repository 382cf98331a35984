"""Message bodies of DESIGN 2.4 and the one JSON codec for them.

Receivers parse bodies with the ``parse_*`` functions, which check the fields they rely on and
raise ``DecodeError`` naming the subject and the problem; a bad message is then logged and
counted by the bus, never allowed to kill a subscription. Standard library only: plugin
processes import this.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any, NotRequired, TypedDict

from rosey.errors import DecodeError, ErrorCode
from rosey.protocol.depth import MAX_DEPTH, too_deep


class ChatUser(TypedDict):
    username: str
    rank: int
    #: Not logged in (a CyTube guest): anyone may have picked that name. Set by connectors.
    guest: NotRequired[bool]


class ChatMessage(TypedDict):
    """``rosey.events.message``: a line someone wrote in a chat."""

    id: str
    platform: str
    channel: str
    user: ChatUser
    text: str
    timestamp: float
    #: Said to the bot alone (a CyTube PM): the reply goes back the same way (``to``).
    private: NotRequired[bool]


class SendMessage(TypedDict):
    """``rosey.platform.<platform>.send``: a line a connector must post."""

    channel: str
    text: str
    in_reply_to: str | None
    #: Say it privately to this user (a reply to a ``private`` message).
    to: NotRequired[str]


class CommandRequest(TypedDict):
    """``rosey.commands.<plugin>.execute`` request."""

    command: str
    args: list[str]
    text: str
    user: ChatUser
    channel: str
    platform: str
    correlation_id: str


#: The ``platform`` of every plugin-to-plugin call as the callee sees it.
PLUGIN_PLATFORM = "plugin"


def command_request(
    command: str,
    args: Sequence[str],
    *,
    user: ChatUser,
    channel: str,
    platform: str,
    correlation_id: str,
    text: str | None = None,
) -> CommandRequest:
    """A ``rosey.commands.<plugin>.execute`` request: the one place its body is built.

    ``text`` is what was typed; a call that typed nothing (plugin to plugin) gets
    ``!command args``.
    """
    return {
        "command": command,
        "args": list(args),
        "text": " ".join([f"!{command}", *args]) if text is None else text,
        "user": user,
        "channel": channel,
        "platform": platform,
        "correlation_id": correlation_id,
    }


def plugin_call_request(
    caller: str, command: str, args: Sequence[str], *, correlation_id: str, text: str | None = None
) -> CommandRequest:
    """The request a plugin's call to another reaches it as: ``caller`` (rank 0) on the
    ``plugin`` platform, no channel (the SDK's ``call`` and the core's relay build it here)."""
    return command_request(
        command,
        args,
        user={"username": caller, "rank": 0},
        channel="",
        platform=PLUGIN_PLATFORM,
        correlation_id=correlation_id,
        text=text,
    )


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
    code: ErrorCode
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
    """Parse a body as JSON, or raise ``DecodeError`` naming the subject.

    Nesting is bounded (``rosey.protocol.depth``): a deep body would make ``json.loads``
    raise ``RecursionError``, which no handler expects.
    """
    if too_deep(data):
        raise DecodeError(subject, f"body nests deeper than {MAX_DEPTH} levels")
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DecodeError(subject, f"body is not UTF-8 JSON ({exc})") from None
    except RecursionError:  # only if the stack was already deep: same answer, same class
        raise DecodeError(subject, f"body nests deeper than {MAX_DEPTH} levels") from None


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
    guest = user.get("guest", False)
    if not isinstance(guest, bool):
        raise DecodeError(subject, "field 'user.guest' must be true or false")
    parsed: ChatUser = {"username": username, "rank": rank}
    if guest:
        parsed["guest"] = True
    return parsed


def parse_chat_message(subject: str, data: bytes) -> ChatMessage:
    return chat_message(subject, decode_object(subject, data))


def chat_message(subject: str, body: dict[str, Any]) -> ChatMessage:
    """A chat message already decoded (handed over in-process): the fields checked and kept."""
    timestamp = body.get("timestamp", time.time())
    if not isinstance(timestamp, int | float) or isinstance(timestamp, bool):
        raise DecodeError(subject, "field 'timestamp' must be a number")
    message: ChatMessage = {
        "id": str(_field(subject, body, "id", (str, int))),
        "platform": _field(subject, body, "platform", str),
        "channel": _field(subject, body, "channel", str),
        "user": _user(subject, body),
        "text": _field(subject, body, "text", str),
        "timestamp": float(timestamp),
    }
    if body.get("private") is True:
        message["private"] = True
    return message


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
