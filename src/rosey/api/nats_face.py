"""The NATS face: ``rosey.manager.<action>`` request/reply (DESIGN 2.6).

One subscription, ``rosey.manager.*``; every request with a reply subject gets exactly one
envelope, ``{"ok": true, "result": ...}`` or ``{"ok": false, "error": {"code", "message"}}``,
whatever it carried: bad JSON, wrong types and unknown actions are ``bad_request``, an unknown
plugin is ``not_found``, anything unexpected is ``internal`` (and logged). Requests are handled
concurrently, each in a task this service owns.

Who may publish here is the broker's business (only admin, CLI and router identities may), so
this face does not check callers itself.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, cast

from rosey.aio import TaskSet
from rosey.api.actions import get_action
from rosey.bus.client import EventBus, Message, Subscription
from rosey.errors import ERROR_CODES, BadRequest, BusError, DecodeError, ErrorCode, RoseyError
from rosey.protocol import subjects, wire

if TYPE_CHECKING:
    from rosey.manager.manager import PluginManager

log = logging.getLogger("rosey.api")

SUBJECT = subjects.MANAGER_ACTIONS
#: Replies larger than this are replaced by an ``internal`` error (NATS' default max payload is
#: 1 MiB; a reply that cannot be published would look like a timeout to the caller).
MAX_REPLY_BYTES = 900 * 1024


def error_reply(code: str, message: str) -> wire.ApiReply:
    """The error envelope; a code outside ``ERROR_CODES`` is sent as ``internal``."""
    known: ErrorCode = cast(ErrorCode, code) if code in ERROR_CODES else "internal"
    return {"ok": False, "error": {"code": known, "message": message}}


def parse_body(subject: str, data: bytes) -> dict[str, Any]:
    """The request fields: an empty body (or ``null``) is none; else a JSON object."""
    if not data.strip():
        return {}
    try:
        body = wire.decode(subject, data)
    except DecodeError as exc:
        raise BadRequest(exc.problem) from None
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise BadRequest(f"the body must be a JSON object, got {type(body).__name__}")
    return body


async def answer(manager: PluginManager, subject: str, data: bytes) -> wire.ApiReply:
    """The envelope for one request on ``subject``; never raises (but for cancellation)."""
    try:
        action = get_action(subject.rsplit(".", 1)[-1])
        result = await action.execute(manager, parse_body(subject, data), strict=True)
    except RoseyError as exc:
        return error_reply(exc.code, str(exc))
    except Exception as exc:
        log.exception("management request on %s failed", subject)
        return error_reply("internal", f"{type(exc).__name__}: {exc}")
    return {"ok": True, "result": result}


class ManagementService:
    """Answers every ``rosey.manager.<action>`` request with an envelope."""

    def __init__(self, bus: EventBus, manager: PluginManager) -> None:
        self.bus = bus
        self.manager = manager
        self._subscription: Subscription | None = None
        self._tasks = TaskSet(log, "management reply failed")

    async def start(self) -> None:
        self._subscription = await self.bus.subscribe(SUBJECT, self._on_request)
        await self.bus.flush()

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop taking requests; let those in flight finish (bounded), then cancel the rest."""
        if self._subscription is not None:
            await self._subscription.unsubscribe()
            self._subscription = None
        await self._tasks.drain(timeout, grace=1.0)

    async def _on_request(self, msg: Message) -> None:
        if not msg.reply:
            log.debug("management message on %s without a reply subject: ignored", msg.subject)
            return
        self._tasks.spawn(self._answer(msg), name=f"api:{msg.subject}")

    async def _answer(self, msg: Message) -> None:
        reply = await answer(self.manager, msg.subject, msg.data)
        data = _encode(reply)
        if len(data) > MAX_REPLY_BYTES:
            data = wire.encode(
                error_reply("internal", f"the reply was too large ({len(data)} bytes)")
            )
        try:
            await self.bus.publish_raw(msg.reply, data)
        except BusError as exc:
            log.warning("cannot reply to a request on %s: %s", msg.subject, exc)


def _encode(reply: wire.ApiReply) -> bytes:
    try:
        return wire.encode(reply)
    except (TypeError, ValueError) as exc:  # a result that is not JSON: a bug, still answered
        log.error("management reply is not JSON: %s", exc)
        return wire.encode(error_reply("internal", f"the reply could not be encoded: {exc}"))
