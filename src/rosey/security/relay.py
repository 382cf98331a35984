"""The core's relay of plugin-to-plugin calls: the caller cannot choose who it claims to be.

On the embedded broker a caller granted ``plugins.call:<callee>`` does not reach the callee's
account directly: its account imports the core's service ``rosey.relay.<caller>.<callee>`` as its
local ``rosey.commands.<callee>.execute`` (``rosey.plugins.grants.account_links``). The broker
delivers the call here on a subject that names the caller's account, whatever the message says;
the relay sets the request's ``user`` to ``{"username": <caller>, "rank": 0}`` and its platform
to ``"plugin"``, sends it to the callee with the core's own inbox as reply subject, and passes
the callee's answer back. So a callee only ever receives a call's reply subject from the core
(``_R_.…`` in its account) and a user/platform the core wrote: a caller can neither make the
callee publish where it may not (framing it for violations) nor pose as a chat user or admin.

Calls in flight are bounded per caller (``max_in_flight``): a caller that floods gets an
immediate "busy" answer, and cannot tie up the core's connection for everyone else.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from rosey.bus.client import EventBus, Message, Subscription
from rosey.errors import BusError, DecodeError, NoResponders, RequestTimeout
from rosey.protocol import subjects, wire

__all__ = ["CallRelay", "relayed_request"]

log = logging.getLogger("rosey.security")


def relayed_request(caller: str, body: wire.CommandRequest) -> wire.CommandRequest:
    """The request the callee receives: the caller's command and arguments, the core's
    word for who asks (``user``, ``platform``, ``channel``)."""
    return wire.plugin_call_request(
        caller,
        body["command"],
        body["args"],
        correlation_id=body["correlation_id"],
        text=body["text"],
    )


def _error(text: str) -> wire.CommandReply:
    return {"ok": False, "text": None, "data": None, "error": text}


class CallRelay:
    """Subscribes ``rosey.relay.*.*`` on a core connection and relays each call."""

    def __init__(
        self,
        bus: EventBus,
        may_call: Callable[[str, str], bool],
        *,
        timeout: float = 30.0,
        max_in_flight: int = 16,
    ) -> None:
        self.bus = bus
        #: ``may_call(caller, callee)``: the grants as the core knows them (a second check;
        #: the broker already delivers only what the caller's account imports).
        self.may_call = may_call
        self.timeout = timeout
        self.max_in_flight = max_in_flight
        self.relayed = 0
        self.refused = 0
        self._subscription: Subscription | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._in_flight: dict[str, int] = {}

    def in_flight(self, caller: str) -> int:
        """Calls of ``caller`` waiting for their callee now."""
        return self._in_flight.get(caller, 0)

    async def start(self) -> None:
        self._subscription = await self.bus.subscribe(subjects.RELAY_ALL, self._on_call)
        await self.bus.flush()

    async def stop(self) -> None:
        """Stop intake and cancel calls still waiting for their callee; idempotent."""
        if self._subscription is not None:
            subscription, self._subscription = self._subscription, None
            try:
                await subscription.unsubscribe()
            except BusError as exc:
                log.warning("relay: cannot unsubscribe: %s", exc)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _on_call(self, msg: Message) -> None:
        """Check and admit one call; the relaying runs in a task of its own."""
        route = subjects.parse_relay(msg.subject)
        if route is None or not msg.reply:
            return
        caller, callee = route
        if not self.may_call(caller, callee):
            self.refused += 1
            log.warning("relay: %s may not call %s (refused)", caller, callee)
            await self._answer(msg, _error(f"{caller} is not granted plugins.call:{callee}"))
            return
        if self._in_flight.get(caller, 0) >= self.max_in_flight:
            self.refused += 1
            await self._answer(
                msg, _error(f"{caller} has {self.max_in_flight} calls in flight; try again later")
            )
            return
        self._in_flight[caller] = self._in_flight.get(caller, 0) + 1
        task = asyncio.create_task(self._relay(caller, callee, msg), name=f"relay-{caller}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _relay(self, caller: str, callee: str, msg: Message) -> None:
        try:
            try:
                body = wire.parse_command_request(msg.subject, msg.data)
            except DecodeError as exc:
                await self._answer(msg, _error(f"bad call from {caller}: {exc}"))
                return
            target = subjects.command_execute(callee)
            try:
                answer = await self.bus.request(
                    target, relayed_request(caller, body), timeout=self.timeout
                )
            except NoResponders:
                await self._answer(msg, _error(f"plugin {callee} is not running"))
                return
            except RequestTimeout:
                await self._answer(
                    msg, _error(f"plugin {callee} did not answer within {self.timeout:g} s")
                )
                return
            except BusError as exc:
                await self._answer(msg, _error(f"call to {callee} failed: {exc}"))
                return
            self.relayed += 1
            try:
                await self.bus.publish_raw(msg.reply, answer.data)
            except BusError as exc:
                log.warning("relay: cannot answer %s: %s", caller, exc)
        finally:
            left = self._in_flight.get(caller, 1) - 1
            if left > 0:
                self._in_flight[caller] = left
            else:
                self._in_flight.pop(caller, None)

    async def _answer(self, msg: Message, body: Any) -> None:
        try:
            await msg.respond(body)
        except BusError as exc:
            log.warning("relay: cannot answer on %s: %s", msg.subject, exc)
