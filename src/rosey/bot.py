"""The bot: broker, manager, router, management service and console, started and stopped in order.

Start: embedded nats-server (unless a URL is given) → manager's and router's connections →
plugins (``start_all``) → router → management service → ``runtime.json`` → console.
Stop (SIGTERM, SIGINT, end of console input, or a critical plugin disabled): the reverse,
bounded at every step, so nothing is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rosey.api.chat import handle_plugin_command
from rosey.api.nats_face import ManagementService
from rosey.bus.client import EventBus
from rosey.bus.kv import KeyValue
from rosey.bus.server import EmbeddedServer
from rosey.config import BotConfig
from rosey.connectors.console import ConsoleConnector
from rosey.errors import RoseyError
from rosey.manager.context import Identity, open_identity
from rosey.manager.manager import PluginManager
from rosey.plugins.discovery import Discovery, discover
from rosey.protocol import subjects
from rosey.router.parse import ParsedCommand
from rosey.router.router import Caller, Router
from rosey.sandbox.confine import open_sandbox
from rosey.security.identities import Credentials, IdentityBook
from rosey.security.monitor import ViolationMonitor
from rosey.security.violations import ViolationPolicy

log = logging.getLogger("rosey")

RUNTIME_FILE = "runtime.json"


@dataclass(frozen=True)
class RuntimeInfo:
    """``<state-dir>/runtime.json`` (DESIGN 2.1): how tools reach the running bot."""

    pid: int
    nats_url: str
    user: str | None
    password: str | None

    def write(self, state_dir: Path) -> Path:
        path = state_dir / RUNTIME_FILE
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(
                {
                    "pid": self.pid,
                    "nats_url": self.nats_url,
                    "user": self.user,
                    "password": self.password,
                },
                fh,
            )
        os.replace(tmp, path)
        return path

    @classmethod
    def read(cls, state_dir: Path) -> RuntimeInfo | None:
        try:
            data = json.loads((state_dir / RUNTIME_FILE).read_text())
            return cls(
                int(data["pid"]), str(data["nats_url"]), data.get("user"), data.get("password")
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None


class Bot:
    """One running bot."""

    def __init__(self, config: BotConfig, *, console: bool) -> None:
        self.config = config
        self.console_enabled = console
        self.exit_code = 0

    async def run(self) -> int:
        state_dir = self.config.state_dir
        state_dir.mkdir(parents=True, exist_ok=True)
        async with contextlib.AsyncExitStack() as stack:
            sandbox = await stack.enter_async_context(open_sandbox(state_dir))
            found = discover(self.config.plugins_dir)
            url = self.config.nats.url
            book: IdentityBook | None = None
            monitor = ViolationMonitor(
                ViolationPolicy(
                    self.config.security.max_violations, self.config.security.violation_window_s
                )
            )
            if url is None:
                # One broker identity per plugin, from the grants of every plugin found; the
                # broker enforces them and logs every refusal, which the monitor reports.
                book = IdentityBook()
                book.set_plugins(effective_grants(self.config, found))
                server = EmbeddedServer(
                    state_dir / "nats", authorization=book.render(), on_line=monitor.feed
                )
                await server.start()
                stack.push_async_callback(server.stop)
                sandbox.watch_pid(server.pid)
                url = server.url
                log.info("embedded nats-server ready at %s (pid %s)", url, server.pid)
            else:
                log.warning(
                    "using the external NATS server at %s: plugin permissions are governed by its "
                    "configuration, not enforced by Rosey",
                    url,
                )
            manager_bus = await stack.enter_async_context(
                _core_bus(
                    url,
                    "rosey-manager",
                    book.manager if book else None,
                    subjects.MANAGER_INBOX_PREFIX,
                )
            )
            router_bus = await stack.enter_async_context(
                _core_bus(
                    url, "rosey-router", book.router if book else None, subjects.ROUTER_INBOX_PREFIX
                )
            )

            manager = PluginManager(
                self.config,
                nats_url=url,
                bus=manager_bus,
                spawner=sandbox.spawner(),
                identity=_identities(book),
                enforced=book is not None,
            )
            await manager.initialize(found)
            stack.push_async_callback(manager.shutdown)
            if book is not None:
                await stack.enter_async_context(_watching(monitor, manager))
                await _create_buckets(book, manager_bus)
                manager.on_plugins_added = _identities_for_new_plugins(
                    self.config, book, server, manager_bus
                )
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, stop.set)
            stack.callback(self._remove_signal_handlers, loop)

            await manager.start_all()

            router = Router(router_bus, manager)
            admins = list(self.config.admins)
            open_reads = self.config.security.read_access == "everyone"

            async def plugin_command(parsed: ParsedCommand, caller: Caller) -> list[str]:
                return await handle_plugin_command(
                    manager, parsed, caller, admins, open_reads=open_reads
                )

            router.builtins["plugin"] = plugin_command
            await router.start()
            stack.push_async_callback(router.stop)
            service = ManagementService(manager_bus, manager)
            await service.start()
            stack.push_async_callback(service.stop)

            admin = book.admin if book else None
            info = RuntimeInfo(
                os.getpid(), url, admin.user if admin else None, admin.password if admin else None
            )
            runtime_path = info.write(state_dir)
            stack.callback(runtime_path.unlink, missing_ok=True)
            log.info(
                "rosey is up: %d plugin(s), management on rosey.manager.*", len(manager.supervisors)
            )

            waiters: list[asyncio.Future[Any]] = [
                asyncio.ensure_future(stop.wait()),
                asyncio.ensure_future(asyncio.shield(manager.fatal)),
            ]
            if self.console_enabled:
                console = ConsoleConnector(router_bus, username=_console_user())
                await console.start()
                waiters.append(asyncio.ensure_future(console.read_stdin()))
            _, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            if manager.fatal.done():
                self.exit_code = 1
                log.error("stopping: %s", manager.fatal.result())
            else:
                log.info("stopping")
        log.info("stopped")
        return self.exit_code

    @staticmethod
    def _remove_signal_handlers(loop: asyncio.AbstractEventLoop) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


def _core_bus(url: str, name: str, creds: Credentials | None, inbox_prefix: str) -> EventBus:
    """One of the bot's own connections (unrestricted identity when the broker is ours)."""
    return EventBus(
        url,
        name=name,
        user=creds.user if creds else None,
        password=creds.password if creds else None,
        inbox_prefix=inbox_prefix,
    )


def effective_grants(config: BotConfig, found: Discovery | None = None) -> dict[str, list[str]]:
    """Every discoverable plugin's grants, config overrides applied (for broker identities)."""
    found = found or discover(config.plugins_dir)
    return {name: list(config.apply(p.manifest).permissions) for name, p in found.plugins.items()}


async def _create_buckets(book: IdentityBook, bus: EventBus) -> None:
    """Create the buckets of plugins with the ``storage`` grant (they may not create streams)."""
    for name in book.plugins():
        bucket = book.permissions(name).kv_bucket
        if bucket is not None:
            try:
                await KeyValue.open(bus, bucket, description=f"storage of plugin {name}")
            except RoseyError as exc:
                log.error("cannot create the storage bucket of %s: %s", name, exc)


def _identities_for_new_plugins(
    config: BotConfig, book: IdentityBook, server: EmbeddedServer, bus: EventBus
) -> Callable[[list[str]], Awaitable[None]]:
    """Give plugins found by ``rescan`` their broker identities before they can start.

    A reload keeps every connection; replies in flight survive because every reply subject
    is a fixed inbox prefix, not an ``allow_responses`` grant. The new config is validated
    with ``nats-server -t`` before the server is signalled (``EmbeddedServer.reload``).
    """

    async def added(names: list[str]) -> None:
        book.set_plugins(effective_grants(config))
        await server.reload(book.render())
        log.info("broker identities added for %s", ", ".join(names))
        await _create_buckets(book, bus)

    return added


def _identities(book: IdentityBook | None) -> Callable[[str], Identity]:
    if book is None:
        return open_identity

    def identity(name: str) -> Identity:
        creds = book.plugin(name)
        return Identity(creds.user, creds.password, subjects.plugin_inbox_prefix(name))

    return identity


@contextlib.asynccontextmanager
async def _watching(monitor: ViolationMonitor, manager: PluginManager) -> AsyncIterator[None]:
    """Run the violation monitor for as long as the manager runs."""

    async def disable(plugin: str, reason: str) -> object:
        return await manager.disable_plugin(plugin, reason=reason)

    def counted(plugin: str) -> None:
        supervisor = manager.supervisors.get(plugin)
        if supervisor is not None:
            supervisor.violations += 1

    task = asyncio.create_task(monitor.run(manager.bus, disable, counted), name="violations")
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def _console_user() -> str:
    # The console is the operator's own terminal: it is "console" for the admin list.
    return "console"


def console_wanted(no_console: bool) -> bool:
    return not no_console and sys.stdin.isatty()
