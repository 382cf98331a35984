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

Grants are enforced the way the bot enforces them (``enforce_grants=True``, the default): the
embedded server runs with the broker accounts the bot renders for these plugins
(``rosey.security.identities.IdentityBook``), each plugin connects with its own credentials,
the harness plays the core (router identity, the relay of plugin-to-plugin calls, the
``storage`` bucket created with the bot's quota). A publish or subscribe the bot's broker would
refuse raises ``GrantRefused`` at the harness call that follows it (entering the harness, a
command, ``say``, ``settle``, ``next_chat``, ``wait_handled``, leaving), naming the grant that
is missing. ``enforce_grants=False`` (or a ``nats_url`` of your own, whose configuration then
governs, as for the bot) runs every plugin unrestricted.

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
from typing import TYPE_CHECKING, Any

from rosey.aio import first_of
from rosey.bus.client import EventBus, Message
from rosey.errors import BusPermissionDenied
from rosey.plugins.grant_needed import Operation, grant_needed, refusal_message
from rosey.protocol import subjects, wire
from rosey.sdk.plugin import Plugin
from rosey.sdk.runtime import PluginRuntime

if TYPE_CHECKING:
    from rosey.security.identities import IdentityBook

__all__ = ["CommandFailed", "GrantRefused", "PluginHarness", "PluginUnderTest"]


class CommandFailed(AssertionError):
    """The plugin answered a command with ``ok: false``."""

    def __init__(self, command: str, error: str | None) -> None:
        self.command = command
        self.error = error
        super().__init__(f"{command} failed: {error}")


class GrantRefused(AssertionError):
    """The broker refused a plugin's publish or subscribe, as the bot's broker would.

    ``grant`` is the grant that would allow it (None when no grant does).
    """

    def __init__(self, plugin: str, operation: Operation, subject: str) -> None:
        self.plugin = plugin
        self.operation = operation
        self.subject = subject
        self.grant = grant_needed(plugin, operation, subject)
        super().__init__(
            f"{refusal_message(plugin, operation, subject)}; the bot's broker refuses it the "
            "same way (PluginHarness enforces the bot's grants; enforce_grants=False: it does not)"
        )


class PluginUnderTest:
    """One plugin class with the name, config and data folder it runs with."""

    def __init__(
        self,
        cls: type[Plugin],
        *,
        name: str | None = None,
        config: dict[str, Any] | None = None,
        commands: list[str] | None = None,
        permissions: list[str] | None = None,
    ) -> None:
        self.cls = cls
        self.name = name or cls.__name__.lower().removesuffix("plugin")
        self.config = dict(config or {})
        self.commands = commands if commands is not None else list(cls.command_handlers())
        #: Its grants (``permissions:`` of plugin.yaml): what the harness lets it do.
        self.permissions = list(permissions or [])

    @classmethod
    def from_folder(cls, folder: Path, *, config: dict[str, Any] | None = None) -> PluginUnderTest:
        """Load ``plugin.yaml`` and the entrypoint class from a plugin folder."""
        from rosey.protocol.manifest import load_manifest

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
            permissions=list(manifest.permissions),
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
        enforce_grants: bool = True,
        storage_mb: int = 64,
    ) -> None:
        first = plugin if isinstance(plugin, PluginUnderTest) else PluginUnderTest(plugin)
        self.under_test = [first, *(also or [])]
        self.platform = platform
        #: Whether the plugins run under the bot's broker permissions (never with ``nats_url``:
        #: a server of your own is governed by its own configuration).
        self.enforce_grants = enforce_grants and nats_url is None
        #: The ``storage`` bucket's quota in MiB (the bot's ``security.broker.plugin_storage_mb``).
        self.storage_mb = storage_mb
        #: Every refusal so far, in order; each is raised once (see ``GrantRefused``).
        self.refusals: list[GrantRefused] = []
        self._unraised: list[GrantRefused] = []
        self._refused = asyncio.Event()
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
        if exc_type is None:
            self._raise_refused()  # what the plugins did last (on_stop included) counts too

    async def _start(self) -> None:
        root = self._data_dir
        if root is None:
            root = Path(
                self._stack.enter_context(tempfile.TemporaryDirectory(prefix="rosey-test-"))
            )
        book = self._identity_book() if self.enforce_grants else None
        url = self._nats_url
        if url is None:
            from rosey.bus.server import EmbeddedServer

            server = EmbeddedServer(
                root / "nats",
                authorization=book.render() if book else None,
                max_file_store=str(book.jetstream_store_bytes()) if book else "1GB",
            )
            await server.start()
            self._stack.push_async_callback(server.stop)
            url = server.url
        # The harness is the core: the router's identity (commands, chat) and, when enforcing,
        # the relay of plugin-to-plugin calls and the keeper that creates storage buckets.
        self.bus = EventBus(
            url,
            name="rosey-harness",
            user=book.router.user if book else None,
            password=book.router.password if book else None,
            inbox_prefix=subjects.ROUTER_INBOX_PREFIX,
        )
        await self.bus.connect()
        self._stack.push_async_callback(self.bus.close)
        await self.bus.subscribe(subjects.platform_send(self.platform), self._on_chat)
        if book is not None:
            from rosey.security.relay import CallRelay

            relay = CallRelay(self.bus, book.may_call)
            await relay.start()
            self._stack.push_async_callback(relay.stop)
            await _create_buckets(book, url)
        for put in self.under_test:
            data_dir = root / "data" / put.name
            data_dir.mkdir(parents=True, exist_ok=True)
            creds = book.plugin(put.name) if book else None
            bus = EventBus(
                url,
                name=f"plugin:{put.name}",
                user=creds.user if creds else None,
                password=creds.password if creds else None,
                inbox_prefix=subjects.plugin_inbox_prefix(put.name),
                on_permission_denied=self._on_refused(put.name),
            )
            await bus.connect()
            self._stack.push_async_callback(bus.close)
            instance = put.cls(put.name, dict(put.config), data_dir)
            self._count_events(instance)
            runtime = PluginRuntime(instance, bus)
            await runtime.start()
            await _round_trip(bus)  # a refused subscription is known after this
            self._stack.push_async_callback(runtime.stop, 5.0)
            self._runtimes[put.name] = runtime
            for command in put.commands:
                self._commands[command] = put.name
            self._raise_refused()
        await self.bus.flush()

    def _identity_book(self) -> IdentityBook:
        """The broker identities the bot would give these plugins (``IdentityBook``)."""
        from rosey.security.identities import BrokerQuotas, IdentityBook

        book = IdentityBook(BrokerQuotas(storage_mb=self.storage_mb))
        book.set_plugins({put.name: put.permissions for put in self.under_test})
        return book

    def _on_refused(self, plugin: str) -> Callable[[BusPermissionDenied], None]:
        def refused(denied: BusPermissionDenied) -> None:
            operation: Operation = (
                "publish to" if denied.operation == "publish to" else "subscribe to"
            )
            refusal = GrantRefused(plugin, operation, denied.subject)
            self.refusals.append(refusal)
            self._unraised.append(refusal)
            self._refused.set()

        return refused

    def _raise_refused(self) -> None:
        """Raise the first refusal not raised yet (each is raised once)."""
        if self._unraised:
            first = self._unraised[0]
            self._unraised.clear()
            self._refused.clear()
            raise first

    async def _unless_refused(self, wait: Awaitable[Any]) -> Any:
        """``wait``'s result, or ``GrantRefused`` as soon as the broker refuses a plugin
        something (a test waiting for a chat line the plugin was not allowed to send fails
        at once, with the reason, instead of timing out)."""
        self._raise_refused()
        index, result = await first_of(self._refused.wait(), wait)
        if index == 0:
            self._raise_refused()
        return result

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
        request = wire.command_request(
            parsed.command,
            parsed.args,
            user={"username": user, "rank": rank},
            channel=channel,
            platform=self.platform,
            correlation_id=uuid.uuid4().hex,
            text=parsed.text,
        )
        subject = subjects.command_execute(plugin)
        reply = await self._unless_refused(
            self._require_bus().request(subject, request, timeout=timeout)
        )
        # A refusal of something the handler did before it replied is on the plugin's own
        # connection: its flush brings it in before this returns.
        await self.settle()
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
        self._raise_refused()

    async def settle(self) -> None:
        """Wait until every plugin's connection has processed what was sent so far."""
        for runtime in self._runtimes.values():
            await _round_trip(runtime.bus)
        await self._require_bus().flush()
        self._raise_refused()

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

        async def reached() -> None:
            while self._handled[name] < count:
                changed = self._handled_changed[name]
                await changed.wait()
                changed.clear()

        async with asyncio.timeout(timeout):
            await self._unless_refused(reached())

    async def next_chat(self, timeout: float = 5.0) -> wire.SendMessage:
        """The next line a plugin posted on this platform (``send_chat``)."""
        async with asyncio.timeout(timeout):
            sent: wire.SendMessage = await self._unless_refused(self._chat.get())
            return sent


async def _round_trip(bus: EventBus) -> None:
    """Return once the server has answered everything ``bus`` sent so far, refusals included.

    One flush is not enough: nats-py writes its PING straight to the socket while
    subscriptions and publishes wait in its pending buffer for the flusher task, so the PONG
    can come back before the server has even seen them. The first flush wakes the flusher
    (which runs long before a PONG can arrive); the second PING then follows everything.
    """
    await bus.flush()
    await bus.flush()


async def _create_buckets(book: IdentityBook, url: str) -> None:
    """Create the ``storage`` plugins' buckets as the bot does (``rosey.security.buckets``)."""
    from rosey.security.buckets import create_bucket

    for name in book.plugins():
        await create_bucket(book, name, url)
