"""PluginRuntime: runs one Plugin instance on an EventBus.

Shared by the plugin process (``rosey.sdk.runner``) and the in-process test harness
(``rosey.sdk.testing``), so both behave the same. It owns the plugin's subscriptions and every
in-flight handler task; stopping stops intake, lets in-flight commands finish, runs ``on_stop``
and only then drains the connection (nats-py's ``drain()`` does not wait for tasks a callback
started, so without this in-flight commands would be lost).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from typing import TYPE_CHECKING, Any

from rosey.aio import TaskSet
from rosey.bus.client import EventBus, Message, Subscription
from rosey.errors import BusError, BusPermissionDenied, MissingGrant, NoResponders, RequestTimeout
from rosey.protocol import subjects, wire
from rosey.sdk.plugin import CommandContext, Plugin, PluginCallError, UsageError, User

if TYPE_CHECKING:
    from rosey.bus.kv import KeyValue

log = logging.getLogger("rosey.sdk")

#: The pid the manager knows this plugin by, when it is not ``os.getpid()``: in its own PID
#: namespace the plugin's pids are not the host's (set by ``rosey.sdk.runner``).
MANAGER_PID: int | None = None

#: How long a replaced instance keeps answering after it unsubscribed (``stop(replaced=True)``).
HANDOVER_LINGER_S = 0.2

#: How many ignored reply subjects are logged one by one (then every 1000th: a flood of
#: forged requests must not flood the plugin's log).
_REFUSALS_LOGGED = 10


class PluginRuntime:
    """Subscriptions, dispatch and graceful stop for one plugin."""

    def __init__(self, plugin: Plugin, bus: EventBus) -> None:
        self.plugin = plugin
        self.bus = bus
        self.commands_handled = 0
        self.command_errors = 0
        #: Requests ignored because of their reply subject (``_refuses_reply``).
        self.refused_replies = 0
        self._handlers = {
            name: getattr(plugin, attr) for name, attr in type(plugin).command_handlers().items()
        }
        self._subscriptions: list[Subscription] = []
        self._command_sub: Subscription | None = None
        self._ping_sub: Subscription | None = None
        self._storage: KeyValue | None = None
        #: Command handlers running (their failures are answered by ``_run_command`` itself).
        self._in_flight = TaskSet()
        self._accepting = False
        self._started_at = time.monotonic()
        #: Refusals already explained in the plugin's log (each once).
        self._explained: set[tuple[str, str]] = set()
        bus.on_refusal(self._explain_refusal)
        plugin._runtime = self

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    async def start(self) -> None:
        """Run ``on_start``, then subscribe, and make sure the server has our subscriptions.

        Commands and events are subscribed only after ``on_start`` returned, so no handler
        runs before the state ``on_start`` builds exists.
        """
        name = self.plugin.name
        self._ping_sub = await self.bus.subscribe(subjects.health_ping(name), self._on_ping)
        await self.plugin.on_start()
        self._command_sub = await self.bus.subscribe(
            subjects.command_execute(name), self._on_command, queue=name
        )
        for attr, subject in type(self.plugin).event_handlers().items():
            self._subscriptions.append(await self.bus.subscribe(subject, self._event_handler(attr)))
        self._accepting = True
        # Readiness means the broker routes our subjects to us: flush makes it so.
        await self.bus.flush()

    async def stop(self, timeout: float, *, replaced: bool = False, close: bool = True) -> None:
        """Stop intake, finish in-flight handlers, run ``on_stop``, drain; within ``timeout``.

        ``replaced``: a reload's new instance shares the command queue group and serves
        already, so this one hands over without losing a command: it unsubscribes, handles
        everything the server delivered before the unsubscription (a flush round trip makes
        sure it arrived) and what straggles in for a short linger after it, then finishes as a stop
        does.
        ``Plugin.replaced`` is True from the start of it (``on_stop`` can hand a game over).
        ``close=False``: the process ends right after (the runner): the drain leaves the
        connection open once the server has everything (``EventBus.drain``).
        """
        deadline = time.monotonic() + timeout
        if replaced:
            self.plugin.replaced = True
            subs = [s for s in (self._command_sub, *self._subscriptions) if s is not None]
            try:
                async with asyncio.timeout(max(0.05, timeout / 2)):
                    await asyncio.gather(*(sub.drain(linger=HANDOVER_LINGER_S) for sub in subs))
            except TimeoutError:
                log.warning("%s: handing over took too long; stopping", self.plugin.name)
        self._accepting = False
        # Intake stops first (commands and events), so on_stop sees a final state.
        if self._command_sub is not None:
            await self._command_sub.unsubscribe()
        for sub in self._subscriptions:
            await sub.unsubscribe()
        cancelled = await self._in_flight.drain(deadline - time.monotonic() - 0.2, grace=0.1)
        if cancelled:
            log.warning(
                "%s: %d command(s) still running at stop; cancelled", self.plugin.name, cancelled
            )
        try:
            async with asyncio.timeout(max(0.05, deadline - time.monotonic() - 0.1)):
                await self.plugin.on_stop()
        except TimeoutError:
            log.warning("%s: on_stop did not finish in time", self.plugin.name)
        except Exception:
            log.exception("%s: on_stop failed", self.plugin.name)
        if self._ping_sub is not None:
            await self._ping_sub.unsubscribe()
        await self.bus.drain(close=close)

    # -- inbound ------------------------------------------------------------------------------

    def _refuses_reply(self, msg: Message) -> bool:
        """True (and logged) when a request's reply subject is not one the core or a granted
        caller uses: answering it would make this plugin publish where the requester chose,
        e.g. ``rosey.manager.stop``, and take the blame for the refusal."""
        if not msg.reply or subjects.is_answerable_reply(msg.reply):
            return False
        self.refused_replies += 1
        if self.refused_replies <= _REFUSALS_LOGGED or self.refused_replies % 1000 == 0:
            log.warning(
                "%s: ignored a request on %s with reply subject %s (not a reply inbox; "
                "%d ignored so far)",
                self.plugin.name,
                msg.subject,
                ascii(msg.reply[:120]),
                self.refused_replies,
            )
        return True

    async def _on_command(self, msg: Message) -> None:
        if self._refuses_reply(msg):
            return
        if not self._accepting:
            await msg.respond(_reply(False, None, None, f"{self.plugin.name} is stopping"))
            return
        request = wire.parse_command_request(msg.subject, msg.data)
        self._in_flight.spawn(self._run_command(request, msg))

    async def _run_command(self, request: wire.CommandRequest, msg: Message) -> None:
        handler = self._handlers.get(request["command"])
        if handler is None:
            self.command_errors += 1
            known = ", ".join(sorted(self._handlers)) or "none"
            await msg.respond(
                _reply(
                    False,
                    None,
                    None,
                    f"{self.plugin.name} has no command !{request['command']} (it has: {known})",
                )
            )
            return
        ctx = CommandContext(
            command=request["command"],
            args=tuple(request["args"]),
            text=request["text"],
            user=User(request["user"]["username"], request["user"]["rank"]),
            channel=request["channel"],
            platform=request["platform"],
            correlation_id=request["correlation_id"],
        )
        self.commands_handled += 1
        try:
            result = await handler(ctx)
        except UsageError as exc:
            body = _reply(True, str(exc), None, None)
        except asyncio.CancelledError:
            await msg.respond(
                _reply(False, None, None, f"{self.plugin.name} stopped before answering")
            )
            raise
        except MissingGrant as exc:  # the author's to fix: say which grant, in the reply too
            self.command_errors += 1
            body = _reply(False, None, None, f"!{request['command']} failed: {exc}")
        except Exception as exc:
            self.command_errors += 1
            self.plugin.log.exception("!%s failed", request["command"])
            body = _reply(False, None, None, f"!{request['command']} failed: {type(exc).__name__}")
        else:
            body = _reply_from(result)
        await msg.respond(body)

    async def _on_ping(self, msg: Message) -> None:
        if self._refuses_reply(msg):
            return
        if not _ping_is_for_me(msg.data):
            return  # during a reload the manager pings one of the two instances by its pid
        await msg.respond(
            {
                "ok": True,
                "pid": MANAGER_PID or os.getpid(),
                "in_flight": len(self._in_flight),
                "commands": self.commands_handled,
                "errors": self.command_errors,
                "uptime_s": round(time.monotonic() - self._started_at, 3),
            }
        )

    def _event_handler(self, attr: str) -> Any:
        method = getattr(self.plugin, attr)

        async def deliver(msg: Message) -> None:
            await method(msg.json())

        return deliver

    async def storage(self) -> KeyValue:
        """The plugin's bucket, opened once (``rosey_<name>``); ``MissingGrant`` at once
        without the ``storage`` grant (the broker's refusal, not a timeout)."""
        if self._storage is None:
            from rosey.bus.kv import KeyValue

            opening = KeyValue.open(self.bus, subjects.kv_bucket(self.plugin.name))
            try:
                self._storage = await self.bus.refused_or(opening, _is_jetstream)
            except BusPermissionDenied as exc:
                raise self.missing_grant(exc) from None
        return self._storage

    def missing_grant(self, denied: BusPermissionDenied) -> MissingGrant:
        """The refusal as ``MissingGrant``, naming the grant that would allow it."""
        from rosey.plugins.grant_needed import grant_needed  # only when refused: off the path

        publish = denied.operation == "publish to"
        grant = grant_needed(
            self.plugin.name, "publish to" if publish else "subscribe to", denied.subject
        )
        return MissingGrant(self.plugin.name, denied.subject, denied.operation, grant)

    def _explain_refusal(self, denied: BusPermissionDenied) -> None:
        """Say in the plugin's log which grant a refused publish or subscribe needs (once per
        subject: a loop must not flood the log)."""
        key = (denied.operation, denied.subject)
        if key in self._explained or len(self._explained) >= 100:
            return
        self._explained.add(key)
        self.plugin.log.error("%s", self.missing_grant(denied))

    # -- outbound -----------------------------------------------------------------------------

    async def publish(self, subject: str, data: Any) -> None:
        await self.bus.publish(subject, data)

    async def call(
        self, plugin: str, command: str, args: list[str], *, timeout: float
    ) -> str | None:
        # With the embedded broker the core relays the call and sets who asks itself
        # (rosey.security.relay); this is what an external server's callee sees.
        request = wire.plugin_call_request(
            self.plugin.name,
            command,
            args,
            correlation_id=f"{self.plugin.name}-{time.monotonic_ns()}",
        )
        subject = subjects.command_execute(plugin)
        try:
            reply_msg = await self.bus.request(subject, request, timeout=timeout)
        except BusPermissionDenied as exc:
            raise self.missing_grant(exc) from None
        except (NoResponders, RequestTimeout) as exc:
            raise PluginCallError(plugin, command, str(exc)) from None
        except BusError as exc:
            raise PluginCallError(plugin, command, str(exc)) from None
        reply = wire.parse_command_reply(subject, reply_msg.data)
        if not reply["ok"]:
            raise PluginCallError(plugin, command, reply["error"] or "failed")
        return reply["text"]


def _is_jetstream(operation: str, subject: str) -> bool:
    """A refused JetStream API call or key (what ``storage`` opens)."""
    return subject.startswith(("$js.", "$kv.", "$JS.", "$KV."))


def _ping_is_for_me(data: bytes) -> bool:
    """A ping names the instance it is for (``{"pid": N}``) or none (``{}``: any answers)."""
    if not data or data in (b"{}", b"null"):
        return True
    try:
        body = json.loads(data)
    except ValueError:
        return True
    pid = body.get("pid") if isinstance(body, dict) else None
    return not isinstance(pid, int) or pid == (MANAGER_PID or os.getpid())


def _reply(ok: bool, text: str | None, data: Any, error: str | None) -> wire.CommandReply:
    return {"ok": ok, "text": text, "data": data, "error": error}


def _reply_from(result: Any) -> wire.CommandReply:
    if result is None or isinstance(result, str):
        return _reply(True, result, None, None)
    return _reply(True, None, result, None)
