"""Reload: a running plugin's new code and manifest take over without losing a command.

DESIGN 2.10. The plugin's folder is read again (``read_candidate``: manifest, entrypoint) and
the change checked (``rosey.manager.change_rules``); its broker identity gets the new grants before
anything connects; then the new instance is started *beside* the old one: both subscribe the
plugin's command subject in one queue group, so the broker shares commands between them. Once
the new one is ready and has passed a short probation (it stays alive and answers pings
addressed to its pid), the supervisor's life task takes it over (``PluginLife.hand_over``) and
retires the old one gracefully: the SDK unsubscribes, handles what was already delivered,
lingers briefly, finishes its in-flight handlers, runs ``on_stop`` (``Plugin.replaced`` set),
drains and exits.

Anything wrong with the new instance (invalid manifest, a command or dependency conflict, an
import error, a crash, not ready within ``health.start_timeout_s``, unhealthy in probation)
kills it; the old instance never stopped serving, the old grants are put back, and the caller
gets ``RolledBack`` with the reason. The new instance's failure is no crash of the plugin: it
never counts toward the crash loop.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from rosey.aio import first_of
from rosey.bus.client import EventBus
from rosey.config import BotConfig
from rosey.errors import BusError, InvalidState, RolledBack, RoseyError, describe_exit
from rosey.manager.context import ManagerContext
from rosey.manager.launch import await_ready
from rosey.manager.overlay import effective_manifest
from rosey.manager.spawnspec import spawn_spec
from rosey.manager.supervisor import PluginSupervisor
from rosey.plugins.discovery import MANIFEST_FILE, DiscoveredPlugin, Discovery
from rosey.protocol import subjects
from rosey.protocol.manifest import Manifest
from rosey.sandbox.process import PluginProcess

__all__ = ["Candidate", "discard", "read_candidate", "start_beside"]

log = logging.getLogger("rosey.manager")

#: Seconds between the probation's pings.
PING_EVERY_S = 0.25


@dataclass(frozen=True)
class Candidate:
    """A plugin's folder as it is on disk now: what a reload or restart would run."""

    found: DiscoveredPlugin
    #: The manifest it would run with (bot config laid over it, within the operator's bounds).
    manifest: Manifest
    #: What the operator's bounds changed in it (status shows them).
    notes: tuple[str, ...]


def read_candidate(
    config: BotConfig, supervisor: PluginSupervisor, action: str, found: Discovery
) -> Candidate:
    """``supervisor``'s folder as ``found`` read it again; ``RolledBack`` (stage ``manifest``)
    when it no longer holds a valid plugin of that name."""
    name, folder = supervisor.name, supervisor.folder
    if found.problems:
        raise RolledBack(name, action, "manifest", str(found.problems[0]))
    plugin = found.plugins.get(name)
    if plugin is None:
        if not (folder / MANIFEST_FILE).is_file():
            why = f"{folder / MANIFEST_FILE} is gone"
        else:
            others = ", ".join(map(repr, found.plugins)) or "none"
            why = (
                f"{folder / MANIFEST_FILE} no longer declares plugin {name!r} (it declares "
                f"{others}); a plugin's name cannot change"
            )
        raise RolledBack(name, action, "manifest", why)
    bounded = effective_manifest(config, plugin)
    return Candidate(plugin, bounded.manifest, bounded.notes)


async def start_beside(
    ctx: ManagerContext,
    supervisor: PluginSupervisor,
    candidate: Candidate,
    probation_s: float,
) -> PluginProcess:
    """Start ``candidate`` beside the running instance; it once ready and through its
    probation. ``RolledBack`` (the new process killed) when it did not get there,
    ``InvalidState`` when the plugin was asked to stop meanwhile."""
    name, manifest = supervisor.name, candidate.manifest
    stop = supervisor.stop_requested
    spec = spawn_spec(ctx, name, candidate.found.folder, manifest)
    async with ctx.start_gate.slot():
        try:
            process = await ctx.spawner.spawn(spec)
        except (OSError, RoseyError) as exc:
            raise RolledBack(name, "reload", "spawn", f"cannot spawn: {exc}") from exc
        log.info("%s (pid %d): reload: new instance started beside the old", name, process.pid)
        try:
            error = await await_ready(process, stop, manifest.health.start_timeout_s)
        except BaseException:
            await discard(process)
            raise
    try:
        if error is not None:
            raise RolledBack(name, "reload", "start", str(error))
        if not stop.is_set():
            await _probation(ctx.bus, name, process, stop, probation_s, manifest.health.timeout_s)
        if stop.is_set():
            raise InvalidState(name, str(supervisor.state), "reload", "a stop was requested")
    except BaseException:
        await discard(process)
        raise
    return process


async def _probation(
    bus: EventBus,
    name: str,
    process: PluginProcess,
    stop: asyncio.Event,
    seconds: float,
    ping_timeout: float,
) -> None:
    """At least one ping, then one every ``PING_EVERY_S`` until ``seconds`` have passed; each
    addressed to ``process`` (the old instance stays silent). ``RolledBack`` on a failed ping
    or an exit; returns early on a stop."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        first, result = await first_of(
            stop.wait(), process.wait(), _ping(bus, name, process.pid, ping_timeout)
        )
        if first == 0:
            return
        if first == 1:
            raise _exited(name, process, result)
        if result is not None:
            raise RolledBack(name, "reload", "probation", f"unhealthy: {result}")
        remaining = deadline - loop.time()
        if remaining <= 0:
            return
        first, result = await first_of(
            stop.wait(), process.wait(), timeout=min(remaining, PING_EVERY_S)
        )
        if first == 0:
            return
        if first == 1:
            raise _exited(name, process, result)


async def _ping(bus: EventBus, name: str, pid: int, timeout: float) -> str | None:
    """None when the instance ``pid`` answered a health ping in time; else why not."""
    try:
        reply = await bus.request(subjects.health_ping(name), {"pid": pid}, timeout=timeout)
        body = reply.json()
    except (BusError, RoseyError) as exc:
        return f"no answer to a health ping within {timeout:g} s ({exc})"
    if not isinstance(body, dict) or body.get("ok") is not True:
        return f"the health ping was answered with {str(body)[:200]}"
    return None


def _exited(name: str, process: PluginProcess, code: int) -> RolledBack:
    tail = process.stderr_tail.lines(8)
    text = f"it exited during its probation ({describe_exit(code)})"
    if tail:
        text += "; last stderr lines:" + "".join(f"\n  | {line}" for line in tail)
    return RolledBack(name, "reload", "probation", text)


async def discard(process: PluginProcess) -> None:
    """Kill a new instance that will not take over (it is nobody's crash)."""
    process.kill_tree()
    await process.stop(0.5)
