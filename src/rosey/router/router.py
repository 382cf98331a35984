"""The router: chat lines in, plugin commands out, replies back to the connector.

It listens on ``rosey.events.message`` (queue group ``router``), turns ``!word args`` into a
request on ``rosey.commands.<plugin>.execute``, sends the reply on
``rosey.platform.<platform>.send``, and publishes the outcome on ``.result``/``.error`` for the
manager's error-rate health check. ``!plugin ...`` and ``!help`` go to built-in handlers.

Each message is handled in its own task in the router's task group, so one slow plugin never
holds up another's commands.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from rosey.bus.client import EventBus, Message, Subscription
from rosey.errors import BusError, DecodeError, NoResponders, RequestTimeout
from rosey.protocol import subjects, wire
from rosey.router.parse import CommandSyntaxError, ParsedCommand, parse_command

log = logging.getLogger("rosey.router")

DEFAULT_COMMAND_TIMEOUT = 10.0
MAX_IN_FLIGHT = 2000


class CommandDirectory(Protocol):
    """What the router needs to know from the manager."""

    def plugin_for(self, command: str) -> str | None:
        """The plugin that answers ``command``, or None."""

    def unavailable_reason(self, plugin: str) -> str | None:
        """None when the plugin can take commands, else why not (in words)."""

    def commands(self) -> dict[str, str]:
        """``{command: plugin}`` of every known command."""


@dataclass(frozen=True, slots=True)
class Caller:
    """Who typed a command, as the management layer sees it."""

    platform: str
    username: str
    rank: int


#: A built-in chat command: gets the parsed command and the caller, returns the reply text, or
#: several texts, sent as one chat message each, in order.
BuiltIn = Callable[[ParsedCommand, Caller], Awaitable[str | list[str]]]


class Router:
    def __init__(
        self,
        bus: EventBus,
        directory: CommandDirectory,
        *,
        command_timeout: float = DEFAULT_COMMAND_TIMEOUT,
    ) -> None:
        self.bus = bus
        self.directory = directory
        self.command_timeout = command_timeout
        self.builtins: dict[str, BuiltIn] = {"help": self._help}
        self.handled = 0
        self._subscription: Subscription | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        # Correlation ids: unique per run (random prefix) without a uuid per command.
        self._id_prefix = uuid.uuid4().hex[:12] + "-"
        self._ids = itertools.count(1)

    async def start(self) -> None:
        self._subscription = await self.bus.subscribe(
            subjects.EVENTS_MESSAGE, self._on_message, queue="router"
        )
        await self.bus.flush()

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop intake and let in-flight commands finish (bounded)."""
        if self._subscription is not None:
            await self._subscription.unsubscribe()
            self._subscription = None
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)

    async def _on_message(self, msg: Message) -> None:
        message = wire.parse_chat_message(msg.subject, msg.data)
        try:
            parsed = parse_command(message["text"])
        except CommandSyntaxError as exc:
            await self._reply(message, exc.problem)
            return
        if parsed is None:
            return
        await self._slots.acquire()
        task = asyncio.create_task(self._handle(message, parsed))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots.release()
        if not task.cancelled() and task.exception() is not None:
            log.error("router: command task failed", exc_info=task.exception())

    async def _handle(self, message: wire.ChatMessage, parsed: ParsedCommand) -> None:
        self.handled += 1
        builtin = self.builtins.get(parsed.command)
        if builtin is not None:
            caller = Caller(
                message["platform"], message["user"]["username"], message["user"]["rank"]
            )
            replies = await builtin(parsed, caller)
            for text in [replies] if isinstance(replies, str) else replies:
                await self._reply(message, text)
            return
        plugin = self.directory.plugin_for(parsed.command)
        if plugin is None:
            await self._reply(message, f"unknown command !{parsed.command} (try !help)")
            return
        why = self.directory.unavailable_reason(plugin)
        if why is not None:
            await self._reply(message, f"!{parsed.command}: plugin {plugin} is not running ({why})")
            return
        await self._dispatch(message, parsed, plugin)

    async def _dispatch(
        self, message: wire.ChatMessage, parsed: ParsedCommand, plugin: str
    ) -> None:
        correlation_id = f"{self._id_prefix}{next(self._ids)}"
        request: wire.CommandRequest = {
            "command": parsed.command,
            "args": list(parsed.args),
            "text": parsed.text,
            "user": message["user"],
            "channel": message["channel"],
            "platform": message["platform"],
            "correlation_id": correlation_id,
        }
        subject = subjects.command_execute(plugin)
        started = time.perf_counter()
        error: str | None = None
        text: str | None
        try:
            reply_msg = await self.bus.request(subject, request, timeout=self.command_timeout)
            reply = wire.parse_command_reply(subject, reply_msg.data)
        except RequestTimeout:
            error = f"no answer within {self.command_timeout:g} s"
            text = f"!{parsed.command}: {plugin} did not answer in time"
        except NoResponders:
            error = "not listening"
            text = f"!{parsed.command}: plugin {plugin} is not running"
        except (BusError, DecodeError) as exc:
            error = str(exc)
            text = f"!{parsed.command}: {plugin} gave no usable answer"
        else:
            if reply["ok"]:
                text = reply["text"]
            else:
                error = reply["error"] or "failed"
                text = f"!{parsed.command}: {error}"
        duration_ms = (time.perf_counter() - started) * 1000
        if text:
            await self._reply(message, text)
        outcome: wire.CommandOutcome = {
            "command": parsed.command,
            "correlation_id": correlation_id,
            "duration_ms": round(duration_ms, 3),
            "error": error,
        }
        outcome_subject = (
            subjects.command_error(plugin) if error else subjects.command_result(plugin)
        )
        await self.bus.publish(outcome_subject, outcome)

    async def _reply(self, message: wire.ChatMessage, text: str) -> None:
        body: wire.SendMessage = {
            "channel": message["channel"],
            "text": text,
            "in_reply_to": message["id"],
        }
        try:
            await self.bus.publish(subjects.platform_send(message["platform"]), body)
        except (BusError, ValueError) as exc:
            log.warning("router: cannot reply on platform %r: %s", message["platform"], exc)

    async def _help(self, parsed: ParsedCommand, caller: Caller) -> str:
        by_plugin: dict[str, list[str]] = {}
        for command, plugin in sorted(self.directory.commands().items()):
            by_plugin.setdefault(plugin, []).append(f"!{command}")
        lines = [
            "Commands: "
            + ", ".join(["!help", "!plugin", *(c for cs in by_plugin.values() for c in cs)])
        ]
        return "\n".join(lines)
