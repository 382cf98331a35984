"""The bot: broker, manager, router, management service and console, started and stopped in order.

Start: embedded nats-server (unless a URL is given) → manager's and router's connections →
plugins (``start_all``) → router → management service → ``runtime.json`` → console.
Stop (SIGTERM, SIGINT, end of console input, or a critical plugin disabled): the reverse,
bounded at every step, so nothing is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import json
import logging
import os
import resource
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rosey.aio import first_of
from rosey.api.chat import handle_plugin_command
from rosey.api.client import RUNTIME_FILE, RuntimeInfo, forget_bot, remember_bot
from rosey.api.nats_face import ManagementService
from rosey.api.watch import PluginWatcher
from rosey.bus.client import EventBus
from rosey.bus.server import EmbeddedServer, ServerLimits
from rosey.checker import ManifestReads
from rosey.config import BotConfig
from rosey.connectors.console import ConsoleConnector
from rosey.connectors.instances import connector_instances
from rosey.errors import RoseyError
from rosey.files import write_atomically
from rosey.manager.context import Identity, open_identity
from rosey.manager.manager import PluginManager
from rosey.plugins.discovery import DiscoveredPlugin, Discovery, discover
from rosey.plugins.reading import ManifestReader
from rosey.protocol import subjects
from rosey.protocol.text import clean
from rosey.router.parse import ParsedCommand
from rosey.router.router import Caller, Router
from rosey.sandbox.cgroups import family_name
from rosey.sandbox.confine import open_sandbox
from rosey.sandbox.limits import manager_open_files
from rosey.sandbox.sdnotify import notify
from rosey.security.broker_cgroup import BrokerCgroup
from rosey.security.buckets import create_bucket, delete_bucket
from rosey.security.connector_relay import ConnectorRelay
from rosey.security.identities import BrokerQuotas, Credentials, IdentityBook
from rosey.security.monitor import ViolationMonitor
from rosey.security.relay import CallRelay
from rosey.security.violations import ViolationPolicy

if TYPE_CHECKING:
    from rosey.api.http.app import HttpFace

log = logging.getLogger("rosey")


def write_runtime(info: RuntimeInfo, state_dir: Path) -> Path:
    """Write ``<state-dir>/runtime.json`` (private: it holds the operator's credentials)."""
    path = state_dir / RUNTIME_FILE
    write_atomically(path, json.dumps(info.to_json()).encode(), private=True)
    return path


class Bot:
    """One running bot."""

    def __init__(self, config: BotConfig, *, console: bool, watch: bool = False) -> None:
        self.config = config
        self.console_enabled = console
        #: ``rosey run --watch``: reload a plugin when its files change (rosey.api.watch).
        self.watch = watch
        self.exit_code = 0

    async def run(self) -> int:
        state_dir = self.config.state_dir
        state_dir.mkdir(parents=True, exist_ok=True)
        notify(STATUS="starting")  # also takes NOTIFY_SOCKET out of what children inherit
        _raise_open_files()
        async with contextlib.AsyncExitStack() as stack:
            sandbox = await stack.enter_async_context(
                open_sandbox(
                    state_dir,
                    data_quota=self.config.security.data_quota,
                    fork_server=self.config.runtime.fork_server,
                    namespaces={
                        "pid": self.config.security.pid_namespace,
                        "ipc": self.config.security.ipc_namespace,
                    },
                )
            )
            reads = ManifestReads()
            found = await asyncio.to_thread(discover, self.config.plugins_dir, reads)
            # Connector instances (``connectors:``) are supervised like plugins, by instance name.
            connectors = await asyncio.to_thread(
                connector_instances, self.config, found.plugins, reads
            )
            for problem in connectors.problems:
                log.error("connector not started: %s", problem)
            found = Discovery(
                {**found.plugins, **connectors.plugins}, found.problems, found.duplicates
            )
            url = self.config.nats.url
            book: IdentityBook | None = None
            monitor = ViolationMonitor(
                ViolationPolicy(
                    self.config.security.max_violations, self.config.security.violation_window_s
                )
            )
            if url is None:
                # One broker account per plugin, from the grants of every plugin found; the
                # broker enforces them and logs every refusal, which the monitor reports.
                book = _identity_book(self.config)
                book.set_connectors(connectors.routes)
                book.set_plugins(effective_grants(self.config, found))
                server = EmbeddedServer(
                    state_dir / "nats",
                    authorization=book.render(),
                    on_line=monitor.feed,
                    max_file_store=str(book.jetstream_store_bytes()),
                    limits=_server_limits(self.config),
                )
                await server.start()
                # The server's memory cgroup goes after the server (the stack unwinds LIFO).
                broker_cgroup = BrokerCgroup(
                    sandbox.host,
                    family_name(state_dir),
                    os.getpid(),
                    self.config.security.broker.server_memory_mb,
                )
                stack.callback(broker_cgroup.remove)
                stack.push_async_callback(server.stop)
                sandbox.watch_pid(server.pid)
                placed = server.pid is not None and broker_cgroup.place(server.pid)
                if placed and sandbox.warden is not None and broker_cgroup.folder is not None:
                    # If the bot is killed, the warden empties and removes it with the rest.
                    sandbox.warden.watch_cgroup(broker_cgroup.folder)
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
            # The router and the connector relay hand chat lines and replies to each other
            # in-process; on their own connection with no_echo, the copies they publish for
            # others never come back to them (rosey.security.connector_relay).
            chat_bus = await stack.enter_async_context(
                _core_bus(
                    url,
                    "rosey-chat",
                    book.router if book else None,
                    subjects.ROUTER_INBOX_PREFIX,
                    no_echo=True,
                )
            )

            manager = PluginManager(
                self.config,
                nats_url=url,
                bus=manager_bus,
                spawner=sandbox.spawner(),
                identity=_identities(book),
                enforced=book is not None,
                read=reads,
            )
            await manager.initialize(found)
            stack.push_async_callback(manager.shutdown)
            if book is not None:
                await stack.enter_async_context(_watching(monitor, manager))
                await _create_buckets(book, url)
                manager.on_plugins_added = _identities_for_new_plugins(
                    self.config, book, server, url, _grants_of(connectors.plugins), reads
                )
                manager.on_grants_changed = _identities_for_changed_grants(book, server, url)
                manager.on_storage_purged = functools.partial(delete_bucket, book, url=url)
                # Plugin-to-plugin calls reach the callee through the core (rosey.security.relay).
                relay = CallRelay(router_bus, book.may_call)
                await relay.start()
                stack.push_async_callback(relay.stop)
            connector_relay: ConnectorRelay | None = None
            if connectors.routes:
                # Connectors speak for their own platform and channel only: the core stamps it
                # (rosey.security.connector_relay); a forgery is a violation like the broker's.
                connector_relay = ConnectorRelay(
                    chat_bus,
                    connectors.routes,
                    monitor.report,
                    on_status=_connector_status(manager),
                )
                await connector_relay.start()
                stack.push_async_callback(connector_relay.stop)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, stop.set)
            stack.callback(self._remove_signal_handlers, loop)

            # A stop during the start (a plugin slow to get ready) must not wait for it.
            # (start_all's own failure is raised here, as it is.)
            started, _ = await first_of(manager.start_all(), stop.wait())
            if started != 0:
                log.info("stopping while plugins start")
                return self.exit_code

            router = Router(
                chat_bus,
                manager,
                max_in_flight_per_plugin=self.config.router.max_in_flight_per_plugin,
            )
            admins = list(self.config.admins)
            open_reads = self.config.security.read_access == "everyone"

            async def plugin_command(parsed: ParsedCommand, caller: Caller) -> list[str]:
                return await handle_plugin_command(
                    manager, parsed, caller, admins, open_reads=open_reads
                )

            router.builtins["plugin"] = plugin_command
            await router.start()
            stack.push_async_callback(router.stop)
            if connector_relay is not None:
                connector_relay.deliver = router.handle
                for platform in connector_relay.platforms:
                    router.local_sends[platform] = connector_relay.send
            service = ManagementService(manager_bus, manager)
            await service.start()
            stack.push_async_callback(service.stop)
            http: HttpFace | None = None
            if self.config.http is not None:
                # The face (and h11) only when it is on (``http: null``: not loaded).
                from rosey.api.http.app import serve as serve_http

                http = await serve_http(
                    stack,
                    manager,
                    manager_bus,
                    self.config.http.listen,
                    announce=self.console_enabled,
                )

            if self.watch:
                watcher = PluginWatcher(manager)
                await watcher.start()
                stack.push_async_callback(watcher.stop)
            admin = book.admin if book else None
            info = RuntimeInfo(
                os.getpid(),
                url,
                admin.user if admin else None,
                admin.password if admin else None,
                http.url if http else None,
                http.token if http else None,
            )
            runtime_path = write_runtime(info, state_dir)
            stack.callback(runtime_path.unlink, missing_ok=True)
            # The CLI finds this bot from any folder of this user (rosey.api.client.locate).
            if remember_bot(state_dir) is not None:
                stack.callback(forget_bot, state_dir)
            log.info(
                "rosey is up: %d plugin(s), management on rosey.manager.*", len(manager.supervisors)
            )
            # systemd (Type=notify): up once tools can reach it; STOPPING=1 below on the way down.
            notify(READY="1", STATUS=f"up: {len(manager.supervisors)} plugin(s)")
            stack.callback(notify, STOPPING="1", STATUS="stopping")

            waits: list[Awaitable[Any]] = [stop.wait(), asyncio.shield(manager.fatal)]
            if self.console_enabled:
                console = ConsoleConnector(router_bus, username=_console_user())
                await console.start()
                waits.append(console.read_stdin())
            await first_of(*waits)
            if manager.fatal.done():
                self.exit_code = 1
                log.error("stopping: %s", manager.fatal.result())
            else:
                log.info("stopping")
            # What is alive now lives until the process ends: the collector need not walk it
            # while every plugin is stopped (a full collection walks the whole heap, ~50 ms of
            # CPU with 100 plugins, at the moment they all compete for the CPU).
            gc.freeze()
        log.info("stopped")
        return self.exit_code

    @staticmethod
    def _remove_signal_handlers(loop: asyncio.AbstractEventLoop) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


def _raise_open_files() -> None:
    """More descriptors for the manager (``limits.manager_open_files`` says why and how many)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = manager_open_files(soft, hard)
    if wanted is not None:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (OSError, ValueError) as exc:
            log.warning("cannot raise the open-files limit from %d to %d: %s", soft, wanted, exc)


def _core_bus(
    url: str, name: str, creds: Credentials | None, inbox_prefix: str, *, no_echo: bool = False
) -> EventBus:
    """One of the bot's own connections (unrestricted identity when the broker is ours)."""
    return EventBus(
        url,
        name=name,
        user=creds.user if creds else None,
        password=creds.password if creds else None,
        inbox_prefix=inbox_prefix,
        no_echo=no_echo,
    )


def effective_grants(config: BotConfig, found: Discovery) -> dict[str, list[str]]:
    """Every discovered plugin's grants, config overrides applied (for broker identities)."""
    return {name: list(config.apply(p.manifest).permissions) for name, p in found.plugins.items()}


def _grants_of(plugins: Mapping[str, DiscoveredPlugin]) -> dict[str, list[str]]:
    """The grants of the connector instances (their manifests already carry their settings)."""
    return {name: list(p.manifest.permissions) for name, p in plugins.items()}


def _connector_status(manager: PluginManager) -> Callable[[str, dict[str, Any]], None]:
    """Show a running connector's own words (why it is not in its channel) as its last_error."""

    def update(instance: str, status: dict[str, Any]) -> None:
        supervisor = manager.supervisors.get(instance)
        if supervisor is None or str(supervisor.state) != "running":
            return
        words = status.get("last_error")
        state = status.get("state")
        if isinstance(words, str) and words:
            supervisor.last_error = clean(f"{state}: {words}"[:500], one_line=True)
        elif state == "joined":
            supervisor.last_error = None

    return update


def _identity_book(config: BotConfig) -> IdentityBook:
    broker = config.security.broker
    return IdentityBook(
        BrokerQuotas(
            max_connections=broker.plugin_connections,
            max_subscriptions=broker.plugin_subscriptions,
            max_payload_kb=broker.plugin_payload_kb,
            storage_mb=broker.plugin_storage_mb,
        )
    )


def _server_limits(config: BotConfig) -> ServerLimits:
    broker = config.security.broker
    return ServerLimits(
        max_connections=broker.server_connections, memory_mb=broker.server_memory_mb
    )


async def _create_buckets(book: IdentityBook, url: str) -> None:
    """Create the buckets of plugins with the ``storage`` grant (``rosey.security.buckets``);
    a refusal is logged and costs only that plugin its storage."""
    for name in book.plugins():
        try:
            await create_bucket(book, name, url)
        except RoseyError as exc:
            log.error("cannot create the storage bucket of %s: %s", name, exc)


def _identities_for_new_plugins(
    config: BotConfig,
    book: IdentityBook,
    server: EmbeddedServer,
    url: str,
    connector_grants: Mapping[str, list[str]],
    read: ManifestReader,
) -> Callable[[list[str]], Awaitable[None]]:
    """Give plugins found by ``rescan`` their broker identities before they can start.

    A reload keeps every connection; replies in flight survive because a request into a
    plugin's account crosses by a service import, whose reply mapping a reload keeps (unlike
    an ``allow_responses`` grant). The new config is validated
    with ``nats-server -t`` before the server is signalled (``EmbeddedServer.reload``).
    """

    async def added(names: list[str]) -> None:
        found = await asyncio.to_thread(discover, config.plugins_dir, read)
        book.set_plugins({**effective_grants(config, found), **connector_grants})
        await server.reload(book.render(), max_file_store=str(book.jetstream_store_bytes()))
        log.info("broker identities added for %s", ", ".join(names))
        await _create_buckets(book, url)

    return added


def _identities_for_changed_grants(
    book: IdentityBook, server: EmbeddedServer, url: str
) -> Callable[[dict[str, list[str]]], Awaitable[None]]:
    """A reload or restart changed a plugin's grants: the broker gets every plugin's grants
    as they now run (a validated config reload, as for ``rescan``) before the new instance
    connects. Passwords are kept, so running connections stay."""

    async def changed(grants: dict[str, list[str]]) -> None:
        book.set_plugins(grants)
        await server.reload(book.render(), max_file_store=str(book.jetstream_store_bytes()))
        log.info("broker identities updated (a plugin's grants changed)")
        await _create_buckets(book, url)

    return changed


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

    task = asyncio.create_task(
        monitor.run(manager.bus, disable, manager.record_violation), name="violations"
    )
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
