"""What a plugin author subclasses and decorates (DESIGN 2.7)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from rosey.protocol import subjects

if TYPE_CHECKING:
    from rosey.bus.kv import KeyValue
    from rosey.sdk.runtime import PluginRuntime

__all__ = [
    "CommandContext",
    "Plugin",
    "PluginCallError",
    "UsageError",
    "User",
    "command",
    "on_event",
]

_COMMAND_ATTR = "__rosey_command__"
_HELP_ATTR = "__rosey_help__"
_USAGE_ATTR = "__rosey_usage__"
_EVENT_ATTR = "__rosey_event__"

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


@dataclass(frozen=True, slots=True)
class User:
    username: str
    rank: int = 0


@dataclass(frozen=True, slots=True)
class CommandContext:
    """One chat command as the plugin sees it: ``!roll 2d6`` → ``roll`` with args ``['2d6']``."""

    command: str
    args: tuple[str, ...]
    text: str
    user: User
    channel: str
    platform: str
    correlation_id: str = ""

    @property
    def arg_text(self) -> str:
        """Everything after the command word, as typed."""
        return " ".join(self.args)


class UsageError(Exception):
    """Raise from a command handler to answer the user with a short explanation.

    It is a normal reply (the plugin did its job: the input was wrong), not counted as an error.
    """


class PluginCallError(Exception):
    """``Plugin.call`` reached the other plugin but it answered with an error."""

    def __init__(self, plugin: str, command: str, error: str) -> None:
        self.plugin = plugin
        self.command = command
        self.error = error
        super().__init__(f"{plugin}: !{command} failed: {error}")


def command(name: str, *, help: str | None = None, usage: str | None = None) -> Callable[[F], F]:
    """Mark an ``async def handler(self, ctx) -> str | None`` as the handler of ``!name``.

    ``help`` (one line) and ``usage`` (``"!roll NdM"``) are what ``!help`` and ``!help name``
    show; without them, the handler docstring's first line and its ``usage:`` line. The bot
    reads them from the plugin's source (``rosey.plugins.declared``), never by importing it: give
    them as string literals.
    """
    subjects.token(name, "command name")

    def mark(func: F) -> F:
        setattr(func, _COMMAND_ATTR, name)
        if help is not None:
            setattr(func, _HELP_ATTR, help)
        if usage is not None:
            setattr(func, _USAGE_ATTR, usage)
        return func

    return mark


def on_event(subject: str) -> Callable[[F], F]:
    """Mark an ``async def handler(self, event)`` to receive messages on ``subject``.

    The subject needs a grant (DESIGN 2.5), e.g. ``rosey.events.message`` needs
    ``events.message``; without it the broker refuses the subscription.
    """

    def mark(func: F) -> F:
        setattr(func, _EVENT_ATTR, subject)
        return func

    return mark


class Plugin:
    """Base class of every plugin. Override ``on_start``/``on_stop``; decorate handlers."""

    name: str
    config: dict[str, Any]
    data_dir: Path
    log: logging.Logger
    #: True once a reload's new instance has taken over and this one is being retired: it
    #: still finishes what was delivered to it, then ``on_stop`` runs (hand a game over, or
    #: end it cleanly; the data folder and bucket are the new instance's too).
    replaced: bool
    _runtime: PluginRuntime | None

    def __init__(self, name: str, config: dict[str, Any], data_dir: Path) -> None:
        self.name = name
        self.config = config
        self.data_dir = data_dir
        self.log = logging.getLogger(f"rosey.plugin.{name}")
        self.replaced = False
        self._runtime = None

    async def on_start(self) -> None:
        """Called once connected; readiness is announced after it returns."""

    async def on_stop(self) -> None:
        """Called on SIGTERM or a stop request, after in-flight commands have finished;
        ``self.replaced`` says whether a reload's new instance took over from this one."""

    # -- what a plugin can do on the bus ---------------------------------------------------------

    async def publish(self, event: str, data: Any) -> None:
        """Publish ``data`` on ``rosey.plugins.<name>.<event>``."""
        await self._require_runtime().publish(subjects.plugin_event(self.name, event), data)

    async def send_chat(self, platform: str, channel: str, text: str) -> None:
        """Post an unsolicited chat line (needs the ``chat.send`` grant)."""
        body = {"channel": channel, "text": text, "in_reply_to": None}
        await self._require_runtime().publish(subjects.platform_send(platform), body)

    async def call(self, plugin: str, command: str, *args: str, timeout: float = 5.0) -> str | None:
        """Run another plugin's command (needs ``plugins.call:<plugin>``); its reply text."""
        return await self._require_runtime().call(plugin, command, list(args), timeout=timeout)

    async def storage(self) -> KeyValue:
        """The plugin's own key-value bucket (needs the ``storage`` grant): ``get``/``put``/
        ``delete`` of bytes values. With the embedded server the bot creates the bucket."""
        return await self._require_runtime().storage()

    def _require_runtime(self) -> PluginRuntime:
        if self._runtime is None:
            raise RuntimeError(f"plugin {self.name!r} is not running on a bus yet")
        return self._runtime

    # -- introspection used by the runtime -------------------------------------------------------

    @classmethod
    def command_handlers(cls) -> dict[str, str]:
        """``{command: method name}`` of every ``@command`` on the class."""
        found: dict[str, str] = {}
        for attr in dir(cls):
            name = getattr(getattr(cls, attr, None), _COMMAND_ATTR, None)
            if isinstance(name, str):
                if name in found:
                    raise TypeError(
                        f"{cls.__name__}: two handlers for !{name}: {found[name]} and {attr}"
                    )
                found[name] = attr
        return found

    @classmethod
    def command_help(cls) -> dict[str, tuple[str, str]]:
        """``{command: (one line of help, usage)}``: what ``!help`` shows for each handler.

        The bot reads the same from the plugin's source without importing it
        (``rosey.plugins.declared``); this is the in-process view, for tests and tools.
        """
        import inspect

        from rosey.plugins.declared import docstring_help  # not on the plugin's start path

        found: dict[str, tuple[str, str]] = {}
        for command, attr in cls.command_handlers().items():
            method = getattr(cls, attr)
            doc_help, doc_usage = docstring_help(inspect.getdoc(method) or "")
            found[command] = (
                getattr(method, _HELP_ATTR, None) or doc_help,
                getattr(method, _USAGE_ATTR, None) or doc_usage,
            )
        return found

    @classmethod
    def event_handlers(cls) -> dict[str, str]:
        """``{method name: subject}`` of every ``@on_event`` on the class."""
        found: dict[str, str] = {}
        for attr in dir(cls):
            subject = getattr(getattr(cls, attr, None), _EVENT_ATTR, None)
            if isinstance(subject, str):
                found[attr] = subject
        return found
