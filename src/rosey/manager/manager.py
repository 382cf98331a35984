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
from typing import Any

from rosey.bus.client import EventBus, Message, Subscription
from rosey.config import BotConfig
from rosey.errors import (
    BusError,
    DependencyBlocked,
    DependencyCycle,
    DependencyError,
    DependencyNotRunning,
    InvalidState,
    MissingDependency,
    PluginNotFound,
    RoseyError,
    StartFailed,
)
from rosey.lifecycle.states import State
from rosey.manager.context import Identity, ManagerContext, open_identity
from rosey.manager.desired import Choices, DesiredState, open_store, resolve_enabled
from rosey.manager.ordering import run_in_order
from rosey.manager.status import build_status
from rosey.manager.supervisor import UP, PluginSupervisor
from rosey.plugins.discovery import DiscoveredPlugin, Discovery, discover
from rosey.plugins.graph import Resolution, dependents_of, resolve
from rosey.plugins.manifest import Manifest
from rosey.protocol import subjects, wire
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
    ) -> None:
        self.config = config
        self.bus = bus
        self.enforced = enforced
        self.discovery = Discovery()
        self.supervisors: dict[str, PluginSupervisor] = {}
        #: Resolves (with the reason) when a critical plugin ends disabled: the bot must stop.
        self.fatal: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.desired: Choices | None = None
        self.ctx = ManagerContext(
            config,
            nats_url=nats_url,
            bus=bus,
            spawner=spawner or PlainSpawner(),
            identity=identity,
            on_transition=self._on_transition,
            on_disabled=self._on_disabled,
        )
        self._events: asyncio.Queue[wire.ManagerEvent] = asyncio.Queue()
        self._commands: dict[str, str] = {}
        self._graph: dict[str, tuple[str, ...]] = {}
        self._resolution = Resolution()
        self._dependents: dict[str, list[str]] = {}
        #: Dependency problems that no runtime action can fix (missing, cycle, blocked by those).
        self._problems: dict[str, DependencyError] = {}
        #: Called with the names of plugins ``rescan`` found, before they can start.
        self.on_plugins_added: Callable[[list[str]], Awaitable[None]] | None = None
        self._subscriptions: list[Subscription] = []
        self._closing = False

    # -- setup --------------------------------------------------------------------------------

    async def initialize(self, discovery: Discovery | None = None) -> None:
        """Discover plugins (unless the caller already did), resolve dependencies, load the
        desired state; starts nothing."""
        self.discovery = discovery or discover(self.config.plugins_dir)
        for problem in self.discovery.problems:
            log.error("plugin skipped: %s", problem)
        for name, found in self.discovery.plugins.items():
            manifest = self._effective_manifest(found)
            self.supervisors[name] = PluginSupervisor(found, manifest, self.ctx)
            for command in manifest.commands:
                self._commands[command] = name
        self.ctx.spawn_task(self._publish_events(), name="manager-events")
        self._resolve()
        store = await open_store(self.bus, self.config.state_dir)
        self.desired = Choices(store, await store.load())
        log.info("plugin enable/disable choices are kept in %s", store.where)
        for name, supervisor in sorted(self.supervisors.items()):
            await self._apply_desired(name, supervisor)
        for subject in (subjects.COMMANDS_RESULTS_ALL, subjects.COMMANDS_ERRORS_ALL):
            self._subscriptions.append(await self.bus.subscribe(subject, self._on_outcome))

    def _effective_manifest(self, found: DiscoveredPlugin) -> Manifest:
        """Manifest < config: the ``plugins.<name>`` entry, and ``health_check_interval`` for
        manifests that set no ``health.interval_s`` (when the config file sets it)."""
        manifest = self.config.apply(found.manifest)
        if (
            "health_check_interval" in self.config.model_fields_set
            and "interval_s" not in found.manifest.health.model_fields_set
            and self.config.override_for(found.name).health.interval_s is None
        ):
            health = manifest.health.model_copy(
                update={"interval_s": self.config.health_check_interval}
            )
            manifest = manifest.model_copy(update={"health": health})
        return manifest

    async def rescan(self) -> list[str]:
        """Discover plugins installed since start and add them, stopped; their names.

        Plugins already known are left exactly as they are (a changed manifest needs a bot
        restart). ``on_plugins_added`` runs before the new plugins become startable: the bot
        uses it to give them broker identities.
        """
        found = discover(self.config.plugins_dir)
        added: list[PluginSupervisor] = []
        for name, plugin in sorted(found.plugins.items()):
            if name in self.supervisors:
                continue
            manifest = self._effective_manifest(plugin)
            taken = [c for c in manifest.commands if c in self._commands]
            if taken:
                log.error(
                    "plugin %s skipped: %s",
                    name,
                    ", ".join(
                        f"!{c} is already claimed by plugin {self._commands[c]!r}" for c in taken
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
            for command in supervisor.manifest.commands:
                self._commands[command] = supervisor.name
        self._resolve()
        for supervisor in added:
            await self._apply_desired(supervisor.name, supervisor)
        log.info("rescan: added %s", ", ".join(names))
        return names

    def _resolve(self) -> None:
        self._problems = {}
        self._graph = {n: tuple(s.manifest.dependencies) for n, s in self.supervisors.items()}
        self._resolution = resolution = resolve(self._graph)
        self._dependents = {name: [] for name in self._graph}
        for name, deps in self._graph.items():
            for dep in deps:
                if dep in self._dependents and dep != name:
                    self._dependents[dep].append(name)
        for name, missing in resolution.missing.items():
            self._problems[name] = MissingDependency(name, missing)
        for name, cycle in resolution.cycles.items():
            self._problems.setdefault(name, DependencyCycle(name, cycle))
        for name, blocked in resolution.blocked.items():
            self._problems[name] = DependencyBlocked(name, blocked.dependency, blocked.reason)

    async def _apply_desired(self, name: str, supervisor: PluginSupervisor) -> None:
        """Config < persisted runtime choice; a cycle disables whatever was chosen."""
        assert self.desired is not None
        if name in self._resolution.cycles:
            supervisor.disable(str(DependencyCycle(name, self._resolution.cycles[name])))
            self._on_disabled(name, supervisor.last_error or "dependency cycle")
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
        elif name in self._problems:
            supervisor.block(str(self._problems[name]))

    # -- the Python API (DESIGN 2.8) ----------------------------------------------------------

    async def start_all(self) -> None:
        """Start every enabled plugin; independent ones concurrently, each dependent as soon
        as all its dependencies are ready (never before). A dependency that cannot get ready
        leaves its dependents stopped, with the reason in their status."""
        await run_in_order(self._resolution.start_order, self._graph.__getitem__, self._start_one)

    async def _start_one(self, name: str) -> None:
        supervisor = self.supervisors[name]
        for dep in self._graph[name]:  # ready, or unable to get ready without an operator
            await self.supervisors[dep].wait_for(lambda s: s.settled, timeout=None)
        async with supervisor.lock:
            if self._closing or not supervisor.enabled or supervisor.state in UP:
                return
            for dep in self._graph[name]:
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
                await supervisor.start()
        return self.get_plugin_status(name)

    async def stop_plugin(self, name: str, stop_dependents: bool = True) -> dict[str, Any]:
        """Stop one plugin (and first, by default, every plugin that depends on it)."""
        self._get(name).interrupt_start("stop requested")
        affected = [name, *(dependents_of(self._graph, name) if stop_dependents else ())]
        async with self._locked(affected):
            await self._stop_in_order(
                affected,
                lambda n: "stop requested" if n == name else f"its dependency {name} stops",
            )
        return self.get_plugin_status(name)

    async def restart_plugin(self, name: str) -> dict[str, Any]:
        """Stop (if running) and start again; refused like ``start_plugin``."""
        supervisor = self._get(name)
        async with supervisor.lock:
            self._check_startable(supervisor, "restart")
            await supervisor.stop("restart requested")
            supervisor.restart_count += 1
            await supervisor.start("restart requested")
        return self.get_plugin_status(name)

    async def enable_plugin(self, name: str) -> dict[str, Any]:
        """Allow a plugin to start again (it is not started); resets its crash count.

        The choice is persisted and outlives bot restarts. A plugin on a dependency cycle
        cannot be enabled (``DependencyCycle``): fix the manifests.
        """
        supervisor = self._get(name)
        async with supervisor.lock:
            if name in self._resolution.cycles:
                raise self._problems[name]
            supervisor.enable()
            if name in self._problems:
                supervisor.block(str(self._problems[name]))
            await self._persist(name, enabled=True)
        return self.get_plugin_status(name)

    async def disable_plugin(self, name: str, reason: str | None = None) -> dict[str, Any]:
        """Stop a plugin (dependents first) and keep it from starting, across restarts too."""
        supervisor = self._get(name)
        supervisor.interrupt_start("disable requested")
        affected = [name, *dependents_of(self._graph, name)]
        async with self._locked(affected):
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
        for subscription in self._subscriptions:
            await subscription.unsubscribe()
        self._subscriptions.clear()
        await self.stop_all()
        try:
            async with asyncio.timeout(2):
                await self._events.join()
        except TimeoutError:
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
        return build_status(
            self._get(name), dependents=self._dependents.get(name, []), enforced=self.enforced
        )

    def get_all_status(self) -> list[dict[str, Any]]:
        """Every plugin's STATUS, by name."""
        return [self.get_plugin_status(name) for name in sorted(self.supervisors)]

    # -- the router's directory ---------------------------------------------------------------

    def plugin_for(self, command: str) -> str | None:
        return self._commands.get(command)

    def unavailable_reason(self, plugin: str) -> str | None:
        supervisor = self.supervisors.get(plugin)
        if supervisor is None:
            return "it is not installed"
        if supervisor.state in UP:
            return None
        why = supervisor.last_error.splitlines()[0] if supervisor.last_error else ""
        why = why.removesuffix("; last stderr lines:")
        text = f"it is {supervisor.state}" + (f": {why}" if why else "")
        if supervisor.next_restart_at is not None:
            text += (
                f"; restarting in {max(0.0, supervisor.next_restart_at - time.monotonic()):.0f} s"
            )
        return text

    def commands(self) -> dict[str, str]:
        return dict(self._commands)

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
        if name in self._problems:
            raise self._problems[name]
        for dep in self._graph[name]:
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
        """Stop ``names`` concurrently, each after those of its dependents that are in it.

        Only plugins that can run order each other: the ones on a cycle or blocked by a missing
        dependency have no process, and their edges could loop.
        """
        wanted = set(names)
        startable = set(self._resolution.start_order)
        order = [n for n in reversed(self._resolution.start_order) if n in wanted]
        order += sorted(wanted - startable)

        def after(name: str) -> list[str]:
            return (
                [d for d in self._dependents[name] if d in startable] if name in startable else []
            )

        async def stop(name: str) -> None:
            await self.supervisors[name].stop(reason(name))

        await run_in_order(order, after, stop)

    async def _persist(self, name: str, *, enabled: bool) -> None:
        if self.desired is not None:
            config_enabled = self.config.override_for(name).enabled
            await self.desired.set(name, DesiredState(enabled, config_enabled, time.time()))

    async def _on_outcome(self, msg: Message) -> None:
        """``rosey.commands.<plugin>.result|error``: one command's outcome, for the error rate."""
        parts = msg.subject.split(".")
        supervisor = self.supervisors.get(parts[2]) if len(parts) == 4 else None
        if supervisor is not None:
            supervisor.record_command(ok=parts[3] == "result")

    def _on_transition(self, plugin: str, state: State, previous: State, reason: str) -> None:
        self._events.put_nowait(
            {
                "plugin": plugin,
                "state": str(state),
                "previous": str(previous),
                "reason": reason,
                "timestamp": time.time(),
            }
        )

    def _on_disabled(self, plugin: str, reason: str) -> None:
        supervisor = self.supervisors[plugin]
        if supervisor.manifest.critical and not self.fatal.done():
            text = f"critical plugin {plugin} is disabled: {reason.splitlines()[0]}"
            log.critical("%s; stopping the bot", text)
            self.fatal.set_result(text)

    async def _publish_events(self) -> None:
        while True:
            event = await self._events.get()
            try:
                await self.bus.publish(subjects.manager_events(event["plugin"]), event)
            except RoseyError as exc:
                log.warning("manager: cannot publish state event: %s", exc)
            finally:
                self._events.task_done()
