"""The NATS face: ``rosey.manager.<action>`` request/reply (DESIGN 2.6)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from rosey.api.actions import get_action
from rosey.bus.client import EventBus, Message, Subscription
from rosey.errors import BadRequest, DecodeError, RoseyError
from rosey.manager.manager import PluginManager
from rosey.protocol import subjects, wire

log = logging.getLogger("rosey.api")


class ManagementService:
    """Answers every ``rosey.manager.<action>`` request with an ``ok``/``error`` envelope."""

    def __init__(self, bus: EventBus, manager: PluginManager) -> None:
        self.bus = bus
        self.manager = manager
        self._subscription: Subscription | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._subscription = await self.bus.subscribe("rosey.manager.*", self._on_request)

    async def stop(self) -> None:
        if self._subscription is not None:
            await self._subscription.unsubscribe()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=10)

    async def _on_request(self, msg: Message) -> None:
        task = asyncio.create_task(self._answer(msg))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, msg: Message) -> None:
        reply: wire.ApiReply
        try:
            action = get_action(msg.subject.rsplit(".", 1)[-1])
            params: dict[str, Any] = {}
            if msg.data.strip():
                try:
                    params = wire.decode_object(msg.subject, msg.data)
                except DecodeError as exc:
                    raise BadRequest(exc.problem) from None
            result = await action.run(self.manager, params)
            reply = {"ok": True, "result": result}
        except RoseyError as exc:
            reply = {"ok": False, "error": {"code": exc.code, "message": str(exc)}}  # type: ignore[typeddict-item]
        except Exception as exc:
            log.exception("management request on %s failed", msg.subject)
            reply = {
                "ok": False,
                "error": {"code": "internal", "message": f"{type(exc).__name__}: {exc}"},
            }
        if msg.reply:
            await msg.respond(reply)
        elif subjects.manager_action("list") != msg.subject:
            log.debug("management request on %s without reply subject", msg.subject)
