"""PluginManager: the Python API of DESIGN 2.8 over one supervisor per plugin.

It discovers plugins, lays the bot config over their manifests, resolves dependencies (a
missing dependency blocks that plugin and its dependents; a cycle disables the plugins on it;
everyone else starts), starts plugins concurrently as soon as their own dependencies are ready,
stops them dependents first, keeps the operator's enable/disable choices across restarts,
publishes every state change on ``rosey.manager.events.<plugin>``, feeds the router's command
outcomes into each plugin's error rate, and answers the router's questions about which plugin
owns a command and why one is not available.

Mutating actions on one plugin are serialized by the plugin's lock; an action that touches
several plugins (stop with dependents, disable) takes their locks in name order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, cast

from rosey.bus.client import EventBus, Subscription
from rosey.config import BotConfig
from rosey.errors import (
    BusError,
    DependencyCycle,
    DependencyNotRunning,
    InvalidState,
    PluginNotFound,
    StartFailed,
)
from rosey.lifecycle.states import UP, State
from rosey.manager.changes import Changes
from rosey.manager.context import Identity, ManagerContext, open_identity
from rosey.manager.dependencies import DependencyPlan, plan
from rosey.manager.desired import Choices, DesiredState, open_store, resolve_enabled
from rosey.manager.directory import Commands, unavailable_reason
from rosey.manager.events import StateEvents, subscribe_outcomes
from rosey.manager.ordering import run_in_order
from rosey.manager.overlay import effective_manifest
from rosey.manager.spawnspec import check_once
from rosey.manager.status import build_status
from rosey.manager.supervisor import PluginSupervisor
from rosey.plugins.declared import command_docs
from rosey.plugins.discovery import DiscoveredPlugin, Discovery, discover, duplicate_text
from rosey.plugins.graph import dependents_of
from rosey.plugins.reading import ManifestReader, read_in_process
from rosey.protocol.manifest import Manifest
from rosey.sandbox.process import PlainSpawner, Spawner

log = logging.getLogger("rosey.manager")


class PluginManager:
    """Discovers, starts, watches and stops plugins."""

    def __init__(
        self,
        config: BotConfig,
        *,
        nats_url: str,
        bus: EventBus,
        spawner: Spawner | None = None,
        identity: Callable[[str], Identity] = open_identity,
        enforced: bool = False,
        read: ManifestReader = read_in_process,
    ) -> None:
        self.config = config
        #: Reads and checks manifest files (the bot's: in the checker process).
        self.read_manifests = read
        self.bus = bus
        self.enforced = enforced
        self.discovery = Discovery()
        self.supervisors: dict[str, PluginSupervisor] = {}
        #: Resolves (with the reason) when a critical plugin ends disabled: the bot must stop.
        self.fatal: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.desired: Choices | None = None
        self._events = StateEvents(bus)
        self.ctx = ManagerContext(
            config,
            nats_url=nats_url,
            bus=bus,
            spawner=spawner or PlainSpawner(),
            identity=identity,
            on_transition=self._events.on_transition,
            on_disabled=self._on_disabled,
        )
        self._commands = Commands()
        self._deps = DependencyPlan()
        #: Called with the names of plugins ``rescan`` found, before they can start.
        self.on_plugins_added: Callable[[list[str]], Awaitable[None]] | None = None
        #: Called with every plugin's grants when a reload or restart changes one plugin's
        #: (before its new instance connects; again with the old ones on a rollback).
        self.on_grants_changed: Callable[[dict[str, list[str]]], Awaitable[None]] | None = None
        #: Deletes a removed plugin's storage bucket (``remove --purge``); whether it had one.
        self.on_storage_purged: Callable[[str], Awaitable[bool]] | None = None
        self._changes = Changes(self)
        self._subscriptions: list[Subscription] = []
        self._closing = False
        #: Per plugin, what the operator's bounds changed in its manifest (for status).
        self.bounds: dict[str, tuple[str, ...]] = {}
        #: Names no folder may run under (declared by several folders): why, naming them all.
        self._refused: dict[str, str] = {}

    # -- setup --------------------------------------------------------------------------------

    async def initialize(self, discovery: Discovery | None = None) -> None:
        """Discover plugins (unless the caller already did), resolve dependencies, load the
        desired state; starts nothing."""
        self.discovery = discovery or await self.discover(self.config.plugins_dir)
        for problem in self.discovery.problems:
            log.error("plugin skipped: %s", problem)
        for name, found in self.discovery.plugins.items():
            manifest = self._effective_manifest(found)
            self.supervisors[name] = PluginSupervisor(found, manifest, self.ctx)
            self._commands.claim(name, manifest.commands)
        for name, folders in self.discovery.duplicates.items():
            self._add_refused(name, folders)
        self.ctx.spawn_task(self._events.publish(), name="manager-events")
        self._resolve()
        store = await open_store(self.bus, self.config.state_dir)
        self.desired = Choices(store, await store.load())
        log.info("plugin enable/disable choices are kept in %s", store.where)
        for name, supervisor in sorted(self.supervisors.items()):
            await self._apply_desired(name, supervisor)
        self._subscriptions += await subscribe_outcomes(self.bus, self._on_outcome)

    async def discover(self, paths: Sequence[Path]) -> Discovery:
        """The plugins under ``paths`` (``rosey.plugins.discovery``), read with this manager's
        reader off the event loop (a check takes ~0.2 s in the checker)."""
        return await asyncio.to_thread(discover, paths, self.read_manifests)

    def _effective_manifest(self, found: DiscoveredPlugin) -> Manifest:
        """The manifest ``found`` runs with (``rosey.manager.overlay``); each bound applied is
        logged once and kept for status."""
        bounded = effective_manifest(self.config, found)
        self.bounds[found.name] = bounded.notes
        for note in bounded.notes:
            log.warning("%s: %s (%s)", found.name, note, found.manifest_path)
        return bounded.manifest

    def _add_refused(self, name: str, folders: Sequence[Path]) -> None:
        """A disabled stand-in for a name several folders declare, so that ``status``, ``list``
        and ``last_error`` say why nothing runs under it. It runs no code: its manifest is a
        blank one (none of the folders' commands, grants or limits), and it cannot be enabled.
        """
        self._refused[name] = duplicate_text(name, folders)
        blank = Manifest(name=name, version="0.0.0", entrypoint="none:None")
        self.supervisors[name] = PluginSupervisor(
            DiscoveredPlugin(blank, folders[0]), blank, self.ctx
        )

    async def rescan(self) -> list[str]:
        """Discover plugins installed since start and add them, stopped; their names.

        Plugins already known are left exactly as they are (a changed manifest needs a bot
        restart). ``on_plugins_added`` runs before the new plugins become startable: the bot
        uses it to give them broker identities.
        """
        found = await self.discover(self.config.plugins_dir)
        for name, folders in found.duplicates.items():
            if self._refused.get(name) != duplicate_text(name, folders):
                log.error("rescan: %s", duplicate_text(name, folders))
        added: list[PluginSupervisor] = []
        for name, plugin in sorted(found.plugins.items()):
            if name in self.supervisors:
                continue
            manifest = self._effective_manifest(plugin)
            taken = self._commands.taken(manifest.commands)
            if taken:
                log.error(
                    "plugin %s skipped: %s",
                    name,
                    ", ".join(
                        f"!{c} is already claimed by plugin {owner!r}" for c, owner in taken.items()
                    ),
                )
                continue
            added.append(PluginSupervisor(plugin, manifest, self.ctx))
        if not added:
            return []
        names = [s.name for s in added]
        if self.on_plugins_added is not None:
            await self.on_plugins_added(names)
        for supervisor in added:
            self.supervisors[supervisor.name] = supervisor
            self._commands.claim(supervisor.name, supervisor.manifest.commands)
        self._resolve()
        for supervisor in added:
            await self._apply_desired(supervisor.name, supervisor)
        log.info("rescan: added %s", ", ".join(names))
        return names

    async def forget_plugin(self, name: str, *, forget_choice: bool = True) -> list[str]:
        """Stop a plugin (its dependents first) and drop it: its supervisor, command claims
        and place in the dependency plan (``remove``; an update re-reads it with ``rescan``).

        The names of the dependents that were running and are now stopped (they miss their
        dependency until it is back). ``forget_choice`` also drops the operator's persisted
        enable/disable choice for the name.
        """
        supervisor = self._get(name)
        running = [
            d for d in dependents_of(self._deps.graph, name) if self.supervisors[d].state in UP
        ]
        await self.stop_plugin(name)
        async with supervisor.lock:
            self.supervisors.pop(name, None)
            self._commands.release(name)
            self._refused.pop(name, None)
            self.bounds.pop(name, None)
            self._resolve()
            for dependent, problem in self._deps.problems.items():
                self.supervisors[dependent].block(str(problem))
        if forget_choice and self.desired is not None and self.desired.get(name) is not None:
            await self.desired.set(name, None)
        log.info("%s forgotten%s", name, f"; stopped {', '.join(running)}" if running else "")
        return running

    def _resolve(self) -> None:
        self._deps = plan({n: s.manifest.dependencies for n, s in self.supervisors.items()})

    async def _apply_desired(self, name: str, supervisor: PluginSupervisor) -> None:
        """Config < persisted runtime choice; a cycle disables whatever was chosen."""
        assert self.desired is not None
        if name in self._refused:
            supervisor.disable(self._refused[name])
            return
        if name in self._deps.resolution.cycles:
            supervisor.disable(str(DependencyCycle(name, self._deps.resolution.cycles[name])))
            self._on_disabled(
                name, supervisor.last_error or "dependency cycle", supervisor.manifest.critical
            )
            return
        config_enabled = self.config.override_for(name).enabled
        record = self.desired.get(name)
        enabled, source = resolve_enabled(config_enabled, record)
        if record is not None and source == "config":
            log.info(
                "%s: the config's 'enabled' changed since the runtime choice; config wins", name
            )
            await self.desired.set(name, None)
        if not enabled:
            supervisor.disable(
                f"disabled in the config (plugins.{name}.enabled: false)"
                if source == "config"
                else "disabled by an operator (kept across restarts; enable it to undo)"
            )
        elif name in self._deps.problems:
            supervisor.block(str(self._deps.problems[name]))

    # -- the Python API (DESIGN 2.8) ----------------------------------------------------------

    async def start_all(self) -> None:
        """Start every enabled plugin; independent ones concurrently, each dependent as soon
        as all its dependencies are ready (never before). A dependency that cannot get ready
        leaves its dependents stopped, with the reason in their status."""
        deps = self._deps
        await check_once(self.ctx)
        await run_in_order(deps.resolution.start_order, deps.graph.__getitem__, self._start_one)

    async def _start_one(self, name: str) -> None:
        supervisor = self.supervisors[name]
        for dep in self._deps.graph[name]:  # ready, or unable to get ready without an operator
            await self.supervisors[dep].wait_for(lambda s: s.settled, timeout=None)
        async with supervisor.lock:
            if self._closing or not supervisor.enabled or supervisor.state in UP:
                return
            for dep in self._deps.graph[name]:
                state = self.supervisors[dep].state
                if state not in UP:
                    supervisor.block(str(DependencyNotRunning(name, dep, state)))
                    return
            try:
                await supervisor.start("starting with the bot")
            except (StartFailed, InvalidState) as exc:
                log.error("%s", str(exc).splitlines()[0])

    async def start_plugin(self, name: str) -> dict[str, Any]:
        """Start one plugin and wait until it is ready; a no-op when it is running.

        Refused (``DependencyError``, naming the dependency) when a dependency is not running;
        ``InvalidState`` when it is disabled or being stopped; ``StartFailed`` when it did not
        become ready.
        """
        supervisor = self._get(name)
        async with supervisor.lock:
            if supervisor.state not in UP:
                self._check_startable(supervisor, "start")
                supervisor.taken_down_by = None
                await supervisor.start()
        await self._changes.bring_back(name)
        return self.get_plugin_status(name)

    async def stop_plugin(self, name: str, stop_dependents: bool = True) -> dict[str, Any]:
        """Stop one plugin (and first, by default, every plugin that depends on it)."""
        self._get(name).interrupt_start("stop requested")
        affected = [name, *(dependents_of(self._deps.graph, name) if stop_dependents else ())]
        async with self._locked(affected):
            self._changes.mark_taken_down(name, affected)
            await self._stop_in_order(
                affected,
                lambda n: "stop requested" if n == name else f"its dependency {name} stops",
            )
        return self.get_plugin_status(name)

    async def restart_plugin(self, name: str) -> dict[str, Any]:
        """Stop (if running) and start again, with the manifest as it is on disk now;
        refused like ``start_plugin``, and (``RolledBack``, nothing stopped) when that
        manifest is not valid. Dependents a stop took down come back after it."""
        supervisor = self._get(name)
        async with supervisor.lock:
            self._check_startable(supervisor, "restart")
            await self._changes.reread(supervisor)
            self._check_startable(supervisor, "restart")
            await supervisor.restart("restart requested")
        await self._changes.bring_back(name)
        return self.get_plugin_status(name)

    async def reload_plugin(self, name: str) -> dict[str, Any]:
        """Re-read the plugin's folder and replace the running instance without losing a
        command (DESIGN 2.10; ``rosey.manager.changes``); STATUS once switched.

        ``RolledBack`` (the old instance still serving) when the new one is not valid or does
        not get ready and healthy. A plugin that is not running only takes the new manifest.
        """
        supervisor = self._get(name)
        async with supervisor.lock:
            if self._closing:
                raise InvalidState(name, supervisor.state, "reload", "the bot is shutting down")
            await self._changes.reload(supervisor)
        await self._changes.bring_back(name)
        return self.get_plugin_status(name)

    async def enable_plugin(self, name: str) -> dict[str, Any]:
        """Allow a plugin to start again (it is not started); resets its crash count.

        The choice is persisted and outlives bot restarts. A plugin on a dependency cycle
        cannot be enabled (``DependencyCycle``): fix the manifests.
        """
        supervisor = self._get(name)
        async with supervisor.lock:
            if name in self._refused:
                raise InvalidState(name, str(supervisor.state), "enable", self._refused[name])
            if name in self._deps.resolution.cycles:
                raise self._deps.problems[name]
            supervisor.enable()
            if name in self._deps.problems:
                supervisor.block(str(self._deps.problems[name]))
            await self._persist(name, enabled=True)
        return self.get_plugin_status(name)

    async def disable_plugin(self, name: str, reason: str | None = None) -> dict[str, Any]:
        """Stop a plugin (dependents first) and keep it from starting, across restarts too."""
        supervisor = self._get(name)
        supervisor.interrupt_start("disable requested")
        affected = [name, *dependents_of(self._deps.graph, name)]
        async with self._locked(affected):
            self._changes.mark_taken_down(name, affected)
            await self._stop_in_order(
                affected,
                lambda n: "disable requested" if n == name else f"its dependency {name} stops",
            )
            supervisor.disable(reason or "disabled by an operator")
            await self._persist(name, enabled=False)
        return self.get_plugin_status(name)

    async def stop_all(self) -> None:
        """Stop every plugin: each one after every plugin that depends on it has stopped."""
        await self._stop_in_order(list(self.supervisors), lambda _: "the bot is stopping")

    async def shutdown(self) -> None:
        """Stop all plugins, flush the last events, and end every background task."""
        self._closing = True
        stopping = getattr(self.ctx.spawner, "stopping", None)
        if callable(stopping):
            stopping()  # no standby is made while plugins stop (rosey.sandbox.standby)
        for subscription in self._subscriptions:
            await subscription.unsubscribe()
        self._subscriptions.clear()
        await self.stop_all()
        if not await self._events.flush(2):
            log.warning("manager: some state events were not published before shutdown")
        await self.ctx.cancel_tasks()

    async def health_check_plugin(self, name: str) -> dict[str, Any]:
        """Ping the plugin now: its answer with ``state`` and ``latency_ms``, or why not."""
        supervisor = self._get(name)
        state = str(supervisor.state)
        if supervisor.state not in UP:
            return {"ok": False, "state": state, "error": f"{name} is {state}"}
        started = time.perf_counter()
        try:
            answer = await supervisor.ping()
        except BusError as exc:
            return {"ok": False, "state": state, "error": str(exc)}
        latency = round((time.perf_counter() - started) * 1000, 3)
        return {**answer, "state": state, "latency_ms": latency}

    def get_plugin_status(self, name: str) -> dict[str, Any]:
        """STATUS of DESIGN 2.6 (exactly its keys)."""
        status = build_status(
            self._get(name), dependents=self._deps.dependents.get(name, []), enforced=self.enforced
        )
        return cast(dict[str, Any], status)

    def get_all_status(self) -> list[dict[str, Any]]:
        """Every plugin's STATUS, by name."""
        return [self.get_plugin_status(name) for name in sorted(self.supervisors)]

    # -- the router's directory ---------------------------------------------------------------

    def plugin_for(self, command: str) -> str | None:
        return self._commands.owner(command)

    def unavailable_reason(self, plugin: str) -> str | None:
        return unavailable_reason(self.supervisors.get(plugin))

    def commands(self) -> dict[str, str]:
        return self._commands.as_dict()

    def command_help(self, command: str) -> tuple[str, str] | None:
        """A command's help and usage, read from its plugin's source (never imported)."""
        supervisor = self.supervisors.get(self._commands.owner(command) or "")
        if supervisor is None:
            return None
        doc = command_docs(supervisor.manifest.entrypoint, supervisor.folder).handlers.get(command)
        return (doc.help, doc.usage) if doc else None

    # -- internals ----------------------------------------------------------------------------

    def _get(self, name: str) -> PluginSupervisor:
        supervisor = self.supervisors.get(name)
        if supervisor is None:
            raise PluginNotFound(name, list(self.supervisors))
        return supervisor

    def _check_startable(self, supervisor: PluginSupervisor, action: str) -> None:
        name = supervisor.name
        if self._closing:
            raise InvalidState(name, supervisor.state, action, "the bot is shutting down")
        if supervisor.state is State.DISABLED:
            raise InvalidState(
                name, supervisor.state, action, supervisor.last_error or "enable it first"
            )
        if name in self._deps.problems:
            raise self._deps.problems[name]
        for dep in self._deps.graph[name]:
            state = self.supervisors[dep].state
            if state not in UP:
                error = DependencyNotRunning(name, dep, state)
                supervisor.block(str(error))
                raise error

    @contextlib.asynccontextmanager
    async def _locked(self, names: Iterable[str]) -> AsyncIterator[None]:
        """Hold the locks of ``names``, taken in name order (no deadlock between actions)."""
        async with contextlib.AsyncExitStack() as stack:
            for name in sorted(set(names)):
                await stack.enter_async_context(self.supervisors[name].lock)
            yield

    async def _stop_in_order(self, names: Sequence[str], reason: Callable[[str], str]) -> None:
        """Stop ``names`` concurrently, each after those of its dependents that are in it
        (``DependencyPlan.stop_order``)."""
        order, after = self._deps.stop_order(names)

        async def stop(name: str) -> None:
            await self.supervisors[name].stop(reason(name))

        await run_in_order(order, after.__getitem__, stop)

    async def _persist(self, name: str, *, enabled: bool) -> None:
        if self.desired is not None:
            config_enabled = self.config.override_for(name).enabled
            await self.desired.set(name, DesiredState(enabled, config_enabled, time.time()))

    def _on_outcome(self, plugin: str, ok: bool) -> None:
        """One command's outcome (the router's ``.result`` / ``.error``), for the error rate."""
        supervisor = self.supervisors.get(plugin)
        if supervisor is not None:
            supervisor.record_command(ok=ok)

    def record_violation(self, plugin: str, detail: str = "") -> None:
        """The broker refused one of ``plugin``'s publishes or subscriptions (status counts it,
        and shows ``detail``, the grant it needs, as its last_error)."""
        supervisor = self.supervisors.get(plugin)
        if supervisor is not None:
            supervisor.record_violation(detail)

    def _on_disabled(self, plugin: str, reason: str, critical: bool) -> None:
        """A plugin ended disabled by itself: the bot stops when it is ``critical``."""
        if critical and not self.fatal.done():
            text = f"critical plugin {plugin} is disabled: {reason.splitlines()[0]}"
            log.critical("%s; stopping the bot", text)
            self.fatal.set_result(text)
