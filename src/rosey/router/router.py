"""The router: chat lines in, plugin commands out, replies back to the connector.

It listens on ``rosey.events.message`` (queue group ``router``), turns ``!word args`` into a
request on ``rosey.commands.<plugin>.execute``, sends the reply on
``rosey.platform.<platform>.send``, and publishes the outcome on ``.result``/``.error`` for the
manager's error-rate health check. ``!plugin ...`` and ``!help`` go to built-in handlers.
Lines from connector instances come in-process instead (``handle``, called by the connector
relay after it stamped them), and replies to their platforms go back the same way
(``local_sends``): two bus hops fewer each way; the router's connection has ``no_echo``, so the
relay's copy on ``rosey.events.message`` (for plugins) is not handled twice.

Each message is handled in its own task, so one slow plugin never holds up another's commands,
and each plugin has at most ``max_in_flight_per_plugin`` commands in flight (built-ins too,
each on its own count): beyond that the user gets a short "busy" reply at once, so a plugin
that never answers fills its own count and nobody else's. Everything said in chat is cleaned
of terminal escapes and split by ``rosey.router.split.chunk``; a reply that cannot be decoded
(not JSON, nested too deep) becomes a short error reply and an ``.error`` outcome like any
other failure.
"""

from __future__ import annotations

import itertools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from rosey.aio import TaskSet
from rosey.bus.client import EventBus, Message, Subscription
from rosey.errors import BusError, DecodeError
from rosey.protocol import subjects, wire
from rosey.protocol.text import clean
from rosey.router.outcome import from_failure, from_reply, outcome
from rosey.router.parse import PREFIX, CommandSyntaxError, ParsedCommand, parse_command
from rosey.router.split import chunk

log = logging.getLogger("rosey.router")

DEFAULT_COMMAND_TIMEOUT = 10.0
#: Commands in flight to one plugin (or one built-in) before the next gets "busy" at once
#: (config ``router.max_in_flight_per_plugin``).
DEFAULT_MAX_IN_FLIGHT_PER_PLUGIN = 128
#: The built-in commands' help (``!help``), and their usage (``!help plugin``).
BUILTIN_HELP = {
    "help": "this list; !help COMMAND shows how to use one",
    "plugin": "see and manage the plugins (!plugin help)",
}
BUILTIN_USAGE = {"help": "!help [COMMAND]", "plugin": "!plugin ACTION [NAME] ..."}
#: All commands in flight together: a bound on the router's memory, not a queue.
MAX_IN_FLIGHT = 2000


class CommandDirectory(Protocol):
    """What the router needs to know from the manager."""

    def plugin_for(self, command: str) -> str | None:
        """The plugin that answers ``command``, or None."""

    def unavailable_reason(self, plugin: str) -> str | None:
        """None when the plugin can take commands, else why not (in words)."""

    def commands(self) -> dict[str, str]:
        """``{command: plugin}`` of every known command."""

    def command_help(self, command: str) -> tuple[str, str] | None:
        """``(one line of help, usage)`` of a plugin's command (either may be ``""``), or None."""


@dataclass(frozen=True, slots=True)
class Caller:
    """Who typed a command, as the management layer sees it."""

    platform: str
    username: str
    rank: int
    #: Not logged in (``user.guest`` of the chat message): never matches a by-name admin entry.
    guest: bool = False


#: A built-in chat command: gets the parsed command and the caller, returns the reply text, or
#: several texts, sent as one chat message each, in order.
BuiltIn = Callable[[ParsedCommand, Caller], Awaitable[str | list[str]]]
#: Posts one reply on a platform without the bus (``platform, body``): the connector relay's
#: ``send``, for the platforms that connector instances serve (``Router.local_sends``).
LocalSend = Callable[[str, wire.SendMessage], Awaitable[None]]


class Router:
    def __init__(
        self,
        bus: EventBus,
        directory: CommandDirectory,
        *,
        command_timeout: float = DEFAULT_COMMAND_TIMEOUT,
        max_in_flight_per_plugin: int = DEFAULT_MAX_IN_FLIGHT_PER_PLUGIN,
    ) -> None:
        self.bus = bus
        self.directory = directory
        self.command_timeout = command_timeout
        self.max_in_flight_per_plugin = max_in_flight_per_plugin
        self.builtins: dict[str, BuiltIn] = {"help": self._help}
        #: Platforms whose replies go to an in-process sender instead of
        #: ``rosey.platform.<platform>.send`` (the connector relay, which sits in the same
        #: process and would take them off that subject anyway; bot.py wires it).
        self.local_sends: dict[str, LocalSend] = {}
        self.handled = 0
        #: Commands answered "busy" at once because their plugin had too many in flight.
        self.refused_busy = 0
        self._subscription: Subscription | None = None
        self._tasks = TaskSet(log, "router: command task failed")
        #: Commands in flight per plugin name (built-ins as ``!name``).
        self._in_flight: dict[str, int] = {}
        #: Keys refused since they last drained to half the bound (a busy spell logs once).
        self._busy: set[str] = set()
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
        await self._tasks.drain(timeout, grace=1.0)

    async def _on_message(self, msg: Message) -> None:
        await self.handle(wire.parse_chat_message(msg.subject, msg.data))

    async def handle(self, message: wire.ChatMessage) -> None:
        """One chat line, from the bus or handed over in-process by the connector relay (which
        has stamped its platform and channel): a command starts its task; returns at once."""
        try:
            parsed = parse_command(message["text"])
        except CommandSyntaxError as exc:
            await self._reply(message, exc.problem)
            return
        if parsed is None:
            return
        # The count is taken here, before any await, so a flood cannot slip past the bound;
        # the plugin is looked up again in the task (cheap), which also says if it runs.
        key = (
            f"!{parsed.command}"
            if parsed.command in self.builtins
            else self.directory.plugin_for(parsed.command) or "?"
        )
        count = self._in_flight.get(key, 0)
        if count >= self.max_in_flight_per_plugin or len(self._tasks) >= MAX_IN_FLIGHT:
            self.refused_busy += 1
            if key not in self._busy:  # once per busy spell, not once per refused command
                self._busy.add(key)
                log.warning(
                    "router: %s has %d command(s) in flight (%d in all); more are answered "
                    "'busy' until it catches up",
                    key,
                    count,
                    len(self._tasks),
                )
            await self._reply(message, f"!{parsed.command}: busy, try again in a moment")
            return
        self._in_flight[key] = count + 1
        self._tasks.spawn(self._handle(message, parsed), on_done=lambda _: self._done(key))

    def _done(self, key: str) -> None:
        left = self._in_flight.get(key, 1) - 1
        if left > 0:
            self._in_flight[key] = left
        else:
            self._in_flight.pop(key, None)
        if left <= self.max_in_flight_per_plugin // 2:  # caught up: a new spell logs again
            self._busy.discard(key)

    async def _handle(self, message: wire.ChatMessage, parsed: ParsedCommand) -> None:
        self.handled += 1
        builtin = self.builtins.get(parsed.command)
        if builtin is not None:
            user = message["user"]
            caller = Caller(
                message["platform"], user["username"], user["rank"], user.get("guest", False)
            )
            replies = await builtin(parsed, caller)
            if isinstance(replies, str):
                await self._say(message, replies)
            else:  # already chat-sized (the chat face uses the same splitter)
                for text in replies:
                    await self._reply(message, text)
            return
        plugin = self.directory.plugin_for(parsed.command)
        if plugin is None:
            await self._reply(message, f"unknown command !{parsed.command} (try !help)")
            return
        why = self.directory.unavailable_reason(plugin)
        if why is not None:  # may quote the plugin's stderr: sized and cleaned
            await self._say(message, f"!{parsed.command}: plugin {plugin} is not running ({why})")
            return
        await self._dispatch(message, parsed, plugin)

    async def _dispatch(
        self, message: wire.ChatMessage, parsed: ParsedCommand, plugin: str
    ) -> None:
        correlation_id = f"{self._id_prefix}{next(self._ids)}"
        request = wire.command_request(
            parsed.command,
            parsed.args,
            text=parsed.text,
            user=message["user"],
            channel=message["channel"],
            platform=message["platform"],
            correlation_id=correlation_id,
        )
        subject = subjects.command_execute(plugin)
        started = time.perf_counter()
        try:
            reply_msg = await self.bus.request(subject, request, timeout=self.command_timeout)
            verdict = from_reply(parsed.command, wire.parse_command_reply(subject, reply_msg.data))
        except Exception as exc:
            if not isinstance(exc, BusError | DecodeError):  # else the plugin's or the bus's
                log.exception("router: !%s to %s failed", parsed.command, plugin)
            verdict = from_failure(parsed.command, plugin, exc, self.command_timeout)
        duration_ms = (time.perf_counter() - started) * 1000
        if verdict.text:
            await self._say(message, verdict.text)
        outcome_subject = (
            subjects.command_error(plugin) if verdict.error else subjects.command_result(plugin)
        )
        await self.bus.publish(
            outcome_subject, outcome(parsed.command, correlation_id, duration_ms, verdict.error)
        )

    async def _say(self, message: wire.ChatMessage, text: str) -> None:
        """Send ``text`` in reply, cleaned and split into chat-sized messages (capped)."""
        for part in chunk(text.split("\n")):
            await self._reply(message, part)

    async def _reply(self, message: wire.ChatMessage, text: str) -> None:
        """Send one chat message in reply (cleaned; already sized by the caller)."""
        body: wire.SendMessage = {
            "channel": message["channel"],
            "text": clean(text),
            "in_reply_to": message["id"],
        }
        if message.get("private"):
            # Asked privately (a PM): answered privately, to the one who asked.
            body["to"] = message["user"]["username"]
        try:
            local = self.local_sends.get(message["platform"])
            if local is not None:
                await local(message["platform"], body)
            else:
                await self.bus.publish(subjects.platform_send(message["platform"]), body)
        except (BusError, ValueError) as exc:
            log.warning("router: cannot reply on platform %r: %s", message["platform"], exc)

    async def _help(self, parsed: ParsedCommand, caller: Caller) -> str:
        """``!help``: every command with one line of help; ``!help roll``: its usage."""
        if parsed.args:
            return self._help_for(parsed.args[0].removeprefix(PREFIX).lower())
        lines = ["Commands (!help COMMAND for its usage):"]
        lines += [f"{PREFIX}{word} — {text}" for word, text in BUILTIN_HELP.items()]
        for command, plugin in sorted(self.directory.commands().items()):
            found = self.directory.command_help(command)
            text = found[0] if found and found[0] else f"(plugin {plugin})"
            lines.append(f"{PREFIX}{command} — {text}")
        return "\n".join(lines)

    def _help_for(self, command: str) -> str:
        if command in BUILTIN_HELP:
            return f"usage: {BUILTIN_USAGE[command]} — {BUILTIN_HELP[command]}"
        plugin = self.directory.plugin_for(command)
        if plugin is None:
            return f"no command {PREFIX}{command[:40]} here (try {PREFIX}help)"
        text, usage = self.directory.command_help(command) or ("", "")
        line = f"usage: {usage or PREFIX + command}" + (f" — {text}" if text else "")
        why = self.directory.unavailable_reason(plugin)
        return line + f" (plugin {plugin}" + (f"; not available now: {why})" if why else ")")
