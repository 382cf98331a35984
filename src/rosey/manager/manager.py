"""PluginManager: the Python API of DESIGN 2.8 over one supervisor per plugin.

It discovers plugins, lays the bot config over their manifests, resolves dependencies (a
missing dependency blocks that plugin and its dependents; a cycle disables the plugins on it;
everyone else starts), starts independent plugins concurrently wave by wave, publishes every
state change on ``rosey.manager.events.<plugin>``, and answers the router's questions about
which plugin owns a command and why one is not available.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any

import psutil

from rosey.bus.client import EventBus
from rosey.config import BotConfig
from rosey.errors import (
    DependencyBlocked,
    DependencyCycle,
    DependencyError,
    DependencyNotRunning,
    MissingDependency,
    PluginNotFound,
    RoseyError,
    StartFailed,
)
from rosey.lifecycle.states import State
from rosey.manager.context import ManagerContext, open_identity
from rosey.manager.supervisor import PluginSupervisor
from rosey.plugins.discovery import Discovery, discover
from rosey.plugins.graph import resolve
from rosey.protocol import subjects, wire
from rosey.sandbox.process import PlainSpawner, Spawner

log = logging.getLogger("rosey.manager")

_UP = (State.RUNNING, State.UNHEALTHY)


class PluginManager:
    """Discovers, starts, watches and stops plugins."""

    def __init__(
        self,
        config: BotConfig,
        *,
        nats_url: str,
        bus: EventBus,
        spawner: Spawner | None = None,
        identity: Any = open_identity,
        enforced: bool = False,
    ) -> None:
        self.config = config
        self.bus = bus
        self.enforced = enforced
        self.discovery = Discovery()
        self.supervisors: dict[str, PluginSupervisor] = {}
        self.fatal: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._events: asyncio.Queue[wire.ManagerEvent] = asyncio.Queue()
        self._commands: dict[str, str] = {}
        self._dependents: dict[str, list[str]] = {}
        self._blocked: dict[str, DependencyError] = {}
        self._waves: tuple[tuple[str, ...], ...] = ()
        self._samplers: dict[int, psutil.Process] = {}
        self.ctx = ManagerContext(
            config,
            nats_url=nats_url,
            bus=bus,
            spawner=spawner or PlainSpawner(),
            identity=identity,
            on_transition=self._on_transition,
            on_disabled=self._on_disabled,
        )
        self._publisher: asyncio.Task[None] | None = None

    # -- setup --------------------------------------------------------------------------------

    async def initialize(self) -> None:
        """Discover plugins and resolve their dependencies; starts nothing."""
        self.discovery = discover(self.config.plugins_dir)
        for problem in self.discovery.problems:
            log.error("plugin skipped: %s", problem)
        for name, found in self.discovery.plugins.items():
            manifest = self.config.apply(found.manifest)
            supervisor = PluginSupervisor(found, manifest, self.ctx)
            self.supervisors[name] = supervisor
            for command in manifest.commands:
                self._commands[command] = name
        self._publisher = self.ctx.spawn_task(self._publish_events(), name="manager-events")
        self._resolve()
        for name, supervisor in self.supervisors.items():
            if (
                not self.config.override_for(name).enabled
                and supervisor.state is not State.DISABLED
            ):
                supervisor.disable("disabled in config")

    def _resolve(self) -> None:
        graph = {name: list(s.manifest.dependencies) for name, s in self.supervisors.items()}
        resolution = resolve(graph)
        self._waves = resolution.waves
        self._dependents = {name: [] for name in graph}
        for name, deps in graph.items():
            for dep in deps:
                if dep in self._dependents:
                    self._dependents[dep].append(name)
        for name, cycle in resolution.cycles.items():
            self.supervisors[name].disable(str(DependencyCycle(name, cycle)))
        for name, missing in resolution.missing.items():
            self._blocked[name] = MissingDependency(name, missing)
        for name, blocked in resolution.blocked.items():
            self._blocked.setdefault(
                name, DependencyBlocked(name, blocked.dependency, blocked.reason)
            )
        for name, error in self._blocked.items():
            if name not in resolution.cycles:
                self.supervisors[name].block(str(error))

    # -- the Python API (DESIGN 2.8) ----------------------------------------------------------

    async def start_all(self) -> None:
        """Start every enabled plugin, wave by wave; a dependent only after its deps are ready."""
        for wave in self._waves:
            names = [n for n in wave if self._startable(n)]
            results = await asyncio.gather(
                *(self._start_one(n) for n in names), return_exceptions=True
            )
            for name, result in zip(names, results, strict=True):
                if isinstance(result, BaseException) and not isinstance(result, RoseyError):
                    log.error("%s: start failed unexpectedly", name, exc_info=result)

    def _startable(self, name: str) -> bool:
        supervisor = self.supervisors[name]
        if not supervisor.enabled or supervisor.state is State.DISABLED or name in self._blocked:
            return False
        for dep in supervisor.manifest.dependencies:
            if self.supervisors[dep].state not in _UP:
                supervisor.block(str(DependencyNotRunning(name, dep, self.supervisors[dep].state)))
                return False
        return True

    async def _start_one(self, name: str) -> None:
        try:
            await self.supervisors[name].start()
        except StartFailed as exc:
            log.error("%s", exc)

    async def start_plugin(self, name: str) -> dict[str, Any]:
        supervisor = self._get(name)
        if name in self._blocked:
            raise self._blocked[name]
        for dep in supervisor.manifest.dependencies:
            if self.supervisors[dep].state not in _UP:
                raise DependencyNotRunning(name, dep, self.supervisors[dep].state)
        await supervisor.start()
        return self.get_plugin_status(name)

    async def stop_plugin(self, name: str, stop_dependents: bool = True) -> dict[str, Any]:
        supervisor = self._get(name)
        if stop_dependents:
            for dependent in self._reverse_order(self._all_dependents(name)):
                await self.supervisors[dependent].stop(
                    f"stopping because its dependency {name} stops"
                )
        await supervisor.stop()
        return self.get_plugin_status(name)

    async def restart_plugin(self, name: str) -> dict[str, Any]:
        supervisor = self._get(name)
        await supervisor.stop("restart requested")
        supervisor.restart_count += 1
        return await self.start_plugin(name)

    async def enable_plugin(self, name: str) -> dict[str, Any]:
        supervisor = self._get(name)
        supervisor.enable()
        supervisor.last_error = None
        return self.get_plugin_status(name)

    async def disable_plugin(self, name: str) -> dict[str, Any]:
        await self.stop_plugin(name, stop_dependents=True)
        self._get(name).disable("disabled by an operator")
        return self.get_plugin_status(name)

    async def stop_all(self) -> None:
        """Stop every plugin: dependents before their dependencies, each wave concurrently."""
        for wave in reversed(self._waves):
            await asyncio.gather(
                *(self.supervisors[n].stop("bot stopping") for n in wave if n in self.supervisors)
            )
        leftovers = [s for s in self.supervisors.values() if s.is_alive or s.pid]
        await asyncio.gather(*(s.stop("bot stopping") for s in leftovers))

    async def shutdown(self) -> None:
        """Stop all plugins, flush the last events, and end every background task."""
        await self.stop_all()
        if self._publisher is not None:
            try:
                async with asyncio.timeout(2):
                    await self._events.join()
            except TimeoutError:
                log.warning("manager: some state events were not published before shutdown")
        await self.ctx.cancel_tasks()

    async def health_check_plugin(self, name: str) -> dict[str, Any]:
        """Ping the plugin now; its answer (``ok: false`` with the reason if none)."""
        supervisor = self._get(name)
        if supervisor.state not in _UP:
            return {"ok": False, "error": f"{name} is {supervisor.state}"}
        try:
            return await supervisor.ping()
        except RoseyError as exc:
            return {"ok": False, "error": str(exc)}

    def get_plugin_status(self, name: str) -> dict[str, Any]:
        """STATUS of DESIGN 2.6."""
        s = self._get(name)
        pid = s.pid
        stats: dict[str, Any] = {
            "running": pid is not None,
            "pid": pid,
            "cpu_percent": 0.0,
            "memory_mb": 0.0,
        }
        if pid is not None:
            stats.update(self._sample(pid))
        next_restart = (
            None
            if s.next_restart_at is None
            else max(0.0, round(s.next_restart_at - time.monotonic(), 3))
        )
        run_layers = s._run.process.layers if s._run else []
        return {
            "name": s.name,
            "version": s.manifest.version,
            "state": str(s.state),
            "enabled": s.enabled,
            "critical": s.manifest.critical,
            "uptime_seconds": round(s.uptime, 3),
            "crash_count": s.crash_count,
            "restart_count": s.restart_count,
            "error_rate": 0.0,
            "dependencies": list(s.manifest.dependencies),
            "dependents": sorted(self._dependents.get(name, [])),
            "last_exit_code": s.last_exit_code,
            "last_error": s.last_error,
            "next_restart_in": next_restart,
            "stats": stats,
            "permissions": list(s.manifest.permissions),
            "enforced": self.enforced,
            "layers": list(run_layers),
        }

    def get_all_status(self) -> list[dict[str, Any]]:
        return [self.get_plugin_status(name) for name in sorted(self.supervisors)]

    # -- the router's directory ---------------------------------------------------------------

    def plugin_for(self, command: str) -> str | None:
        return self._commands.get(command)

    def unavailable_reason(self, plugin: str) -> str | None:
        supervisor = self.supervisors.get(plugin)
        if supervisor is None:
            return "it is not installed"
        if supervisor.state in _UP:
            return None
        why = (supervisor.last_error or "").splitlines()[0] if supervisor.last_error else ""
        return f"it is {supervisor.state}" + (f": {why}" if why else "")

    def commands(self) -> dict[str, str]:
        return dict(self._commands)

    # -- internals ----------------------------------------------------------------------------

    def _get(self, name: str) -> PluginSupervisor:
        supervisor = self.supervisors.get(name)
        if supervisor is None:
            raise PluginNotFound(name, list(self.supervisors))
        return supervisor

    def _all_dependents(self, name: str) -> set[str]:
        found: set[str] = set()
        stack = [name]
        while stack:
            for dependent in self._dependents.get(stack.pop(), []):
                if dependent not in found:
                    found.add(dependent)
                    stack.append(dependent)
        return found

    def _reverse_order(self, names: Iterable[str]) -> list[str]:
        wanted = set(names)
        order = [n for wave in self._waves for n in wave if n in wanted]
        return list(reversed(order))

    def _sample(self, pid: int) -> dict[str, float]:
        sampler = self._samplers.get(pid)
        try:
            if sampler is None:
                sampler = self._samplers[pid] = psutil.Process(pid)
                sampler.cpu_percent(None)
            with sampler.oneshot():
                return {
                    "cpu_percent": round(sampler.cpu_percent(None), 1),
                    "memory_mb": round(sampler.memory_info().rss / 1048576, 1),
                }
        except psutil.Error:
            self._samplers.pop(pid, None)
            return {}

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
