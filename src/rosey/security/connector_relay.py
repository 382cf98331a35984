"""The core's relay for connectors: a connector speaks only for its own platform and channel.

The broker cannot look inside a message, so a connector does not publish on ``rosey.events.*``
(denied to every plugin account): it publishes on its own ``rosey.plugins.<instance>.connector.
<kind>`` (``rosey.sdk.connector``), which the broker tags with the instance's account. The
relay takes each, checks it against the instance's route from the bot config
(``rosey.connectors.instances.Route``) and publishes it on ``rosey.events.<kind>`` with the
route's ``platform`` and ``channel``. A body that claims another platform or channel is refused
and reported as a violation (``rosey.security.violation``, counted against the instance like the
broker's refusals, so a connector that keeps forging is disabled).

The other way, the relay subscribes ``rosey.platform.<platform>.send`` for each platform that has
connectors and forwards each send to ``rosey.connectors.<instance>.send`` of the instance whose
channel the body names (with one instance on the platform, that one); each instance's account
imports only its own (``rosey.security.identities``). So a connector receives only what is sent
to its platform and channel.

The router sits in the same process, so the relay hands it each stamped chat message directly
(``deliver``) and the router hands its replies to ``send``: two bus hops fewer each way. The
relay and the router share a connection with ``no_echo``: the copy of a message the relay
publishes on ``rosey.events.message`` (for plugins) never comes back to the router, and a reply
the router publishes never comes back to the relay. Only a stamped message reaches the router:
the same ``stamp`` decides for both, before either.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from rosey.bus.client import EventBus, Message, Subscription
from rosey.connectors.instances import Route
from rosey.errors import BusError, DecodeError
from rosey.protocol import subjects, wire
from rosey.security.violations import Violation

__all__ = [
    "ConnectorRelay",
    "pick_instance",
    "stamp",
]

log = logging.getLogger("rosey.security")

EVENT_KINDS = ("message", "user.join", "user.leave", "media.change")
STATUS_KIND = "status"


def stamp(route: Route, kind: str, body: object) -> dict[str, Any] | str:
    """The event to publish on ``rosey.events.<kind>``, or why it is refused (pure).

    A missing ``platform``/``channel`` is filled in; a different one is a forgery.
    """
    if kind not in EVENT_KINDS:
        return f"unknown connector event {kind!r} (allowed: {', '.join(EVENT_KINDS)})"
    if not isinstance(body, dict):
        return "an event body must be a JSON object"
    for key, ours in (("platform", route.platform), ("channel", route.channel)):
        claimed = body.get(key, ours)
        if claimed != ours:
            return f"claimed {key} {claimed!r}; connector {route.instance} speaks for {ours!r}"
    user = body.get("user")
    if kind != "media.change" and (
        not isinstance(user, dict) or not isinstance(user.get("username"), str)
    ):
        return "an event needs user.username"
    return {**body, "platform": route.platform, "channel": route.channel}


def pick_instance(routes: Mapping[str, Route], platform: str, body: object) -> str | None:
    """The instance a send on ``platform`` is for: the one whose channel the body names, else
    the only one on that platform (pure)."""
    on_platform = [r for r in routes.values() if r.platform == platform]
    if isinstance(body, dict):
        channel = body.get("channel")
        for route in on_platform:
            if route.channel == channel or (
                isinstance(channel, str) and route.channel == channel.lower()
            ):
                return route.instance
    return on_platform[0].instance if len(on_platform) == 1 else None


class ConnectorRelay:
    """Relays connectors' events onto ``rosey.events.*`` and sends to their instance."""

    def __init__(
        self,
        bus: EventBus,
        routes: Mapping[str, Route],
        report: Callable[[Violation], None],
        on_status: Callable[[str, dict[str, Any]], None] | None = None,
        deliver: Callable[[wire.ChatMessage], Awaitable[None]] | None = None,
    ) -> None:
        self.bus = bus
        self.routes = dict(routes)
        self.report = report
        self.on_status = on_status
        #: The in-process router (``Router.handle``): every stamped chat message, at once.
        self.deliver = deliver
        self.relayed = 0
        self.refused = 0
        self.statuses: dict[str, dict[str, Any]] = {}
        self._subscriptions: list[Subscription] = []

    @property
    def platforms(self) -> set[str]:
        """The platforms that connector instances serve (their sends go through ``send``)."""
        return {route.platform for route in self.routes.values()}

    async def start(self) -> None:
        for instance in sorted(self.routes):
            self._subscriptions.append(
                await self.bus.subscribe(subjects.connector_events_all(instance), self._on_event)
            )
        for platform in sorted({r.platform for r in self.routes.values()}):
            self._subscriptions.append(
                await self.bus.subscribe(subjects.platform_send(platform), self._on_send)
            )
        await self.bus.flush()

    async def stop(self) -> None:
        subscriptions, self._subscriptions = self._subscriptions, []
        for subscription in subscriptions:
            try:
                await subscription.unsubscribe()
            except BusError as exc:
                log.warning("connector relay: cannot unsubscribe: %s", exc)

    async def _on_event(self, msg: Message) -> None:
        # rosey.plugins.<instance>.connector.<kind>: the broker names the instance.
        parts = msg.subject.split(".", 4)
        if len(parts) < 5:
            return
        instance, kind = parts[2], parts[4]
        route = self.routes.get(instance)
        if route is None:
            return
        try:
            body = msg.json()
        except DecodeError:
            body = None
        if kind == STATUS_KIND:
            if isinstance(body, dict):
                self.statuses[instance] = body
                if self.on_status is not None:
                    self.on_status(instance, body)
            return
        event = stamp(route, kind, body)
        subject = f"rosey.events.{kind}"
        message: wire.ChatMessage | None = None
        if not isinstance(event, str) and kind == "message":
            try:
                message = wire.chat_message(subject, event)
            except DecodeError as exc:
                event = exc.problem
        if isinstance(event, str):
            self.refused += 1
            log.warning("connector %s: event refused: %s", instance, event)
            self.report(Violation(instance, "forged", msg.subject, f"event refused: {event}"))
            return
        if message is not None and self.deliver is not None:
            try:
                await self.deliver(message)
            except Exception:  # the router's fault: the plugins still get the message
                log.exception("connector relay: the router failed on %s's message", instance)
        try:
            await self.bus.publish(subject, event)
            self.relayed += 1
        except BusError as exc:
            log.warning("connector relay: cannot publish %s's event: %s", instance, exc)

    async def _on_send(self, msg: Message) -> None:
        """A send from the bus (a plugin with ``chat.send``, a tool): forwarded as it came."""
        platform = msg.subject.split(".")[2]
        try:
            body = msg.json()
        except DecodeError:
            return
        await self._forward(platform, body, msg.data)

    async def send(self, platform: str, body: wire.SendMessage) -> None:
        """A reply from the in-process router (``Router.local_sends``)."""
        await self._forward(platform, body, None)

    async def _forward(self, platform: str, body: object, data: bytes | None) -> None:
        instance = pick_instance(self.routes, platform, body)
        if instance is None:
            log.warning("connector relay: no %s connector for channel %r", platform, body)
            return
        subject = subjects.connector_send(instance)
        try:
            if data is not None:
                await self.bus.publish_raw(subject, data)
            else:
                await self.bus.publish(subject, body)
        except BusError as exc:
            log.warning("connector relay: cannot forward a send to %s: %s", instance, exc)
