"""Test a plugin in a few lines, against a real nats-server.

```python
from pathlib import Path
from rosey.sdk.testing import PluginHarness

async def test_roll() -> None:
    async with PluginHarness.from_folder(Path(__file__).parent) as bot:
        reply = await bot.command("!roll 1d1")
        assert reply is not None and "1" in reply
```

The harness starts an embedded nats-server in a temporary folder (or uses ``nats_url``), runs
the plugin in this process with the same runtime the plugin process uses, and talks to it the
way the router does: ``command("!roll 1d6")`` sends a command request and returns the reply
text. ``say()`` publishes a chat line on ``rosey.events.message``; ``next_chat()`` returns the
next line a plugin posts with ``send_chat``. Several plugins can run together (``also=``) so
that ``self.call`` between them works. ``wait_handled(n)`` waits until a plugin has finished
handling ``n`` events (``@on_event`` deliveries), so a test can say a few lines and then look at
what the plugin learned without sleeping.

Not imported by plugin processes: it pulls in the manifest model and the embedded server.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import itertools
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from rosey.bus.client import EventBus, Message
from rosey.protocol import subjects, wire
from rosey.sdk.plugin import Plugin
from rosey.sdk.runtime import PluginRuntime

__all__ = ["CommandFailed", "PluginHarness", "PluginUnderTest"]


class CommandFailed(AssertionError):
    """The plugin answered a command with ``ok: false``."""

    def __init__(self, command: str, error: str | None) -> None:
        self.command = command
        self.error = error
        super().__init__(f"{command} failed: {error}")


class PluginUnderTest:
    """One plugin class with the name, config and data folder it runs with."""

    def __init__(
        self,
        cls: type[Plugin],
        *,
        name: str | None = None,
        config: dict[str, Any] | None = None,
        commands: list[str] | None = None,
    ) -> None:
        self.cls = cls
        self.name = name or cls.__name__.lower().removesuffix("plugin")
        self.config = dict(config or {})
        self.commands = commands if commands is not None else list(cls.command_handlers())

    @classmethod
    def from_folder(cls, folder: Path, *, config: dict[str, Any] | None = None) -> PluginUnderTest:
        """Load ``plugin.yaml`` and the entrypoint class from a plugin folder."""
        from rosey.plugins.manifest import load_manifest

        manifest = load_manifest(folder / "plugin.yaml")
        module_path = folder / f"{manifest.module.replace('.', '/')}.py"
        if not module_path.exists():
            module_path = folder / manifest.module.replace(".", "/") / "__init__.py"
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))
        module_name = manifest.module
        module = sys.modules.get(module_name)
        if module is None or not str(getattr(module, "__file__", "")).startswith(str(folder)):
            spec = importlib.util.spec_from_file_location(module_name, module_path)
            if spec is None or spec.loader is None:
                raise ImportError(f"cannot import {module_path}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            spec.loader.exec_module(module)
        plugin_cls = getattr(module, manifest.class_name)
        return cls(
            plugin_cls,
            name=manifest.name,
            config={**manifest.config, **(config or {})},
            commands=list(manifest.commands),
        )


class PluginHarness:
    """Runs plugins in-process on a real bus and plays router and chat connector for them."""

    def __init__(
        self,
        plugin: PluginUnderTest | type[Plugin],
        *,
        also: list[PluginUnderTest] | None = None,
        nats_url: str | None = None,
        data_dir: Path | None = None,
        platform: str = "test",
    ) -> None:
        first = plugin if isinstance(plugin, PluginUnderTest) else PluginUnderTest(plugin)
        self.under_test = [first, *(also or [])]
        self.platform = platform
        self._nats_url = nats_url
        self._data_dir = data_dir
        self._stack = contextlib.AsyncExitStack()
        self._runtimes: dict[str, PluginRuntime] = {}
        self._chat: asyncio.Queue[wire.SendMessage] = asyncio.Queue()
        self._commands: dict[str, str] = {}
        self._ids = itertools.count(1)
        self._handled: dict[str, int] = {}
        self._handled_changed: dict[str, asyncio.Event] = {}
        self.bus: EventBus | None = None

    @classmethod
    def from_folder(
        cls, folder: Path, *, config: dict[str, Any] | None = None, **kwargs: Any
    ) -> PluginHarness:
        return cls(PluginUnderTest.from_folder(folder, config=config), **kwargs)

    @property
    def plugin(self) -> Plugin:
        """The first plugin's instance."""
        return self._runtimes[self.under_test[0].name].plugin

    def runtime(self, name: str) -> PluginRuntime:
        return self._runtimes[name]

    async def __aenter__(self) -> PluginHarness:
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.aclose()

    async def _start(self) -> None:
        root = self._data_dir
        if root is None:
            root = Path(
                self._stack.enter_context(tempfile.TemporaryDirectory(prefix="rosey-test-"))
            )
        url = self._nats_url
        if url is None:
            from rosey.bus.server import EmbeddedServer

            server = EmbeddedServer(root / "nats")
            await server.start()
            self._stack.push_async_callback(server.stop)
            url = server.url
        self.bus = EventBus(url, name="rosey-harness", inbox_prefix=subjects.ROUTER_INBOX_PREFIX)
        await self.bus.connect()
        self._stack.push_async_callback(self.bus.close)
        await self.bus.subscribe(subjects.platform_send(self.platform), self._on_chat)
        for put in self.under_test:
            data_dir = root / "data" / put.name
            data_dir.mkdir(parents=True, exist_ok=True)
            bus = EventBus(
                url, name=f"plugin:{put.name}", inbox_prefix=subjects.plugin_inbox_prefix(put.name)
            )
            await bus.connect()
            self._stack.push_async_callback(bus.close)
            instance = put.cls(put.name, dict(put.config), data_dir)
            self._count_events(instance)
            runtime = PluginRuntime(instance, bus)
            await runtime.start()
            self._stack.push_async_callback(runtime.stop, 5.0)
            self._runtimes[put.name] = runtime
            for command in put.commands:
                self._commands[command] = put.name
        await self.bus.flush()

    def _count_events(self, instance: Plugin) -> None:
        """Wrap the instance's ``@on_event`` handlers so the harness knows when one finished.

        The runtime looks the handlers up on the instance when it subscribes, so an instance
        attribute shadowing the method is what it delivers to.
        """
        name = instance.name
        self._handled[name] = 0
        self._handled_changed[name] = asyncio.Event()
        for attr in type(instance).event_handlers():
            method: Callable[[Any], Awaitable[Any]] = getattr(instance, attr)

            async def counted(event: Any, _method: Callable[[Any], Awaitable[Any]] = method) -> Any:
                try:
                    return await _method(event)
                finally:
                    self._handled[name] += 1
                    self._handled_changed[name].set()

            setattr(instance, attr, counted)

    async def _on_chat(self, msg: Message) -> None:
        await self._chat.put(wire.parse_send_message(msg.subject, msg.data))

    def _require_bus(self) -> EventBus:
        if self.bus is None:
            raise RuntimeError("use the harness inside 'async with'")
        return self.bus

    async def request(
        self,
        text: str,
        *,
        user: str = "tester",
        rank: int = 0,
        channel: str = "test",
        timeout: float = 5.0,
    ) -> wire.CommandReply:
        """Send ``!command args`` to the plugin that owns the command; the raw reply."""
        from rosey.router.parse import parse_command

        parsed = parse_command(text)
        if parsed is None:
            raise ValueError(f"{text!r} is not a command (it must start with '!')")
        plugin = self._commands.get(parsed.command)
        if plugin is None:
            raise ValueError(
                f"no plugin under test answers !{parsed.command}; known: {sorted(self._commands)}"
            )
        request: wire.CommandRequest = {
            "command": parsed.command,
            "args": list(parsed.args),
            "text": parsed.text,
            "user": {"username": user, "rank": rank},
            "channel": channel,
            "platform": self.platform,
            "correlation_id": uuid.uuid4().hex,
        }
        subject = subjects.command_execute(plugin)
        reply = await self._require_bus().request(subject, request, timeout=timeout)
        return wire.parse_command_reply(subject, reply.data)

    async def command(self, text: str, **kwargs: Any) -> str | None:
        """Send ``!command args``; the reply text. ``CommandFailed`` if the plugin failed."""
        reply = await self.request(text, **kwargs)
        if not reply["ok"]:
            raise CommandFailed(text, reply["error"])
        return reply["text"]

    async def say(self, text: str, *, user: str = "tester", channel: str = "test") -> None:
        """Publish a chat line on ``rosey.events.message``, as a connector would."""
        message: wire.ChatMessage = {
            "id": f"harness-{next(self._ids)}",
            "platform": self.platform,
            "channel": channel,
            "user": {"username": user, "rank": 0},
            "text": text,
            "timestamp": time.time(),
        }
        bus = self._require_bus()
        await bus.publish(subjects.EVENTS_MESSAGE, message)
        await bus.flush()

    async def settle(self) -> None:
        """Wait until every plugin's connection has processed what was sent so far."""
        for runtime in self._runtimes.values():
            await runtime.bus.flush()
        await self._require_bus().flush()

    def handled(self, plugin: str | None = None) -> int:
        """How many events ``plugin`` (default: the first) has finished handling so far."""
        return self._handled[plugin or self.under_test[0].name]

    async def wait_handled(
        self, count: int, *, plugin: str | None = None, timeout: float = 5.0
    ) -> None:
        """Wait until ``plugin`` (default: the first) has finished handling ``count`` events.

        Counts every ``@on_event`` delivery since the harness started, whether the handler
        returned or raised. ``TimeoutError`` if it has not happened within ``timeout`` seconds.
        """
        name = plugin or self.under_test[0].name
        if name not in self._handled:
            raise ValueError(f"no plugin under test is called {name!r}")
        async with asyncio.timeout(timeout):
            while self._handled[name] < count:
                changed = self._handled_changed[name]
                await changed.wait()
                changed.clear()

    async def next_chat(self, timeout: float = 5.0) -> wire.SendMessage:
        """The next line a plugin posted on this platform (``send_chat``)."""
        async with asyncio.timeout(timeout):
            return await self._chat.get()
