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


def command(name: str) -> Callable[[F], F]:
    """Mark an ``async def handler(self, ctx) -> str | None`` as the handler of ``!name``."""
    subjects.token(name, "command name")

    def mark(func: F) -> F:
        setattr(func, _COMMAND_ATTR, name)
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
    _runtime: PluginRuntime | None

    def __init__(self, name: str, config: dict[str, Any], data_dir: Path) -> None:
        self.name = name
        self.config = config
        self.data_dir = data_dir
        self.log = logging.getLogger(f"rosey.plugin.{name}")
        self._runtime = None

    async def on_start(self) -> None:
        """Called once connected; readiness is announced after it returns."""

    async def on_stop(self) -> None:
        """Called on SIGTERM or a stop request, after in-flight commands have finished."""

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
    def event_handlers(cls) -> dict[str, str]:
        """``{method name: subject}`` of every ``@on_event`` on the class."""
        found: dict[str, str] = {}
        for attr in dir(cls):
            subject = getattr(getattr(cls, attr, None), _EVENT_ATTR, None)
            if isinstance(subject, str):
                found[attr] = subject
        return found
