"""The manager's side of changing a plugin while the bot runs (DESIGN 2.10).

- ``reload``: read the folder again, check the change, give the broker identity its new
  grants, run the new instance beside the old and hand over (``rosey.manager.reload``); on any
  failure the old instance keeps serving, the old grants come back, ``RolledBack`` says why
  and so does the plugin's ``last_error``.
- ``reread``: what ``restart`` does first: the manifest on disk replaces the one the plugin
  ran with, or the restart is refused (nothing stopped) when it is not valid.
- ``bring_back``: dependents that a stop of their dependency took down while they ran come
  back, in dependency order, once it is running again; ``last_error`` says why one did not.

Callers hold the plugin's lock (``PluginSupervisor.lock``) for ``reload`` and ``reread``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from rosey.errors import DependencyNotRunning, InvalidState, RolledBack, RoseyError
from rosey.lifecycle.states import UP, State
from rosey.manager.change_rules import change_summary, refusal
from rosey.manager.ordering import run_in_order
from rosey.manager.reload import Candidate, discard, read_candidate, start_beside
from rosey.manager.supervisor import PluginSupervisor
from rosey.plugins.graph import dependents_of
from rosey.protocol.manifest import Manifest

if TYPE_CHECKING:
    from rosey.manager.manager import PluginManager
    from rosey.plugins.discovery import Discovery

__all__ = ["Changes"]

log = logging.getLogger("rosey.manager")


class Changes:
    """Reload, restart's re-read and the dependents' return, for one manager."""

    def __init__(self, manager: PluginManager) -> None:
        self.manager = manager

    # -- reload -----------------------------------------------------------------------------

    async def reload(self, supervisor: PluginSupervisor) -> None:
        """Replace the running instance with the folder's new code and manifest (a plugin that
        is not running only gets the new manifest, for its next start)."""
        name = supervisor.name
        self._check_changeable(supervisor, "reload")
        found = await self.manager.discover([supervisor.folder])
        if supervisor.state in (State.STARTING, State.STOPPING):
            raise InvalidState(
                name, str(supervisor.state), "reload", "try again once it is running or stopped"
            )
        running = supervisor.state in UP
        candidate = self._candidate(supervisor, "reload", found, running=running)
        old = supervisor.manifest
        changes = change_summary(old, candidate.manifest)
        what = "; ".join(changes) or "same manifest"
        granted = await self._grant(supervisor, candidate.manifest, "reload")
        if not running:
            self._adopt(supervisor, candidate)
            log.info("%s: reloaded its manifest (%s); it is %s", name, what, supervisor.state)
            return
        try:
            process = await start_beside(
                self.manager.ctx, supervisor, candidate, self.manager.config.reload_probation_s
            )
            try:
                await supervisor.hand_over(process, candidate.manifest, candidate.found.folder)
            except BaseException:
                await discard(process)
                raise
        except BaseException as exc:
            if granted:
                await self._restore_grants(name)
            if isinstance(exc, RolledBack):
                self._rolled_back(supervisor, exc)
            raise
        self._adopt(supervisor, candidate)
        supervisor.last_error = None
        log.info("%s: reloaded (%s)", name, what)

    # -- restart ----------------------------------------------------------------------------

    async def reread(self, supervisor: PluginSupervisor) -> None:
        """The manifest on disk becomes the one ``supervisor`` restarts with; ``RolledBack``
        (nothing stopped) when it is not valid or conflicts."""
        if supervisor.manifest.kind == "connector" or supervisor.name in self.manager._refused:
            return  # a connector's manifest carries the bot config's settings: kept as is
        found = await self.manager.discover([supervisor.folder])
        candidate = self._candidate(supervisor, "restart", found, running=True)
        changes = change_summary(supervisor.manifest, candidate.manifest)
        await self._grant(supervisor, candidate.manifest, "restart")
        self._adopt(supervisor, candidate)
        if changes:
            log.info("%s: restarts with its new manifest (%s)", supervisor.name, "; ".join(changes))

    # -- dependents -------------------------------------------------------------------------

    def mark_taken_down(self, name: str, affected: Sequence[str]) -> None:
        """A stop of ``name`` is about to stop ``affected`` (``name`` first): its running
        dependents are marked to come back with it; ``name`` itself was stopped on purpose."""
        supervisors = self.manager.supervisors
        supervisors[name].taken_down_by = None
        for dependent in affected:
            if dependent != name and supervisors[dependent].state in UP:
                supervisors[dependent].taken_down_by = name

    async def bring_back(self, name: str) -> None:
        """Start the dependents a stop took down, now that ``name`` runs again."""
        manager = self.manager
        if manager.supervisors[name].state not in UP:
            return
        graph = manager._deps.graph
        waiting = [
            d
            for d in reversed(dependents_of(graph, name))
            if manager.supervisors[d].taken_down_by is not None
        ]
        if waiting:
            await run_in_order(waiting, graph.__getitem__, functools.partial(self._back, name))

    async def _back(self, cause: str, name: str) -> None:
        manager = self.manager
        supervisor = manager.supervisors[name]
        async with supervisor.lock:
            if supervisor.taken_down_by is None or manager._closing:
                return
            if supervisor.state in UP or not supervisor.enabled:
                supervisor.taken_down_by = None
                return
            for dep in manager._deps.graph[name]:
                state = manager.supervisors[dep].state
                if state not in UP:
                    why = DependencyNotRunning(name, dep, str(state))
                    supervisor.last_error = f"not brought back after {cause} came back: {why}"
                    return
            supervisor.taken_down_by = None
            try:
                await supervisor.start(f"its dependency {cause} is back")
            except RoseyError as exc:
                first = str(exc).splitlines()[0]
                supervisor.last_error = f"did not come back after its dependency {cause}: {first}"
                log.warning("%s: %s", name, supervisor.last_error)

    # -- internals --------------------------------------------------------------------------

    def _check_changeable(self, supervisor: PluginSupervisor, action: str) -> None:
        name = supervisor.name
        if name in self.manager._refused:
            raise InvalidState(name, str(supervisor.state), action, self.manager._refused[name])
        if supervisor.manifest.kind == "connector":
            raise InvalidState(
                name,
                str(supervisor.state),
                action,
                "a connector's settings come from the bot config: restart it instead",
            )

    def _candidate(
        self, supervisor: PluginSupervisor, action: str, found: Discovery, *, running: bool
    ) -> Candidate:
        """The folder's plugin as ``found`` it now, checked against the others; ``RolledBack``."""
        manager = self.manager
        try:
            candidate = read_candidate(manager.config, supervisor, action, found)
            problem = refusal(
                supervisor.name,
                candidate.manifest,
                {n: tuple(s.manifest.dependencies) for n, s in manager.supervisors.items()},
                manager.commands(),
                running=running,
                down={n: str(s.state) for n, s in manager.supervisors.items() if s.state not in UP},
            )
            if problem is not None:
                raise RolledBack(supervisor.name, action, problem.stage, problem.reason)
        except RolledBack as exc:
            self._rolled_back(supervisor, exc)
            raise
        return candidate

    async def _grant(self, supervisor: PluginSupervisor, manifest: Manifest, action: str) -> bool:
        """Give the broker identity ``manifest``'s grants when they changed; whether they did."""
        hook = self.manager.on_grants_changed
        if hook is None or set(manifest.permissions) == set(supervisor.manifest.permissions):
            return False
        try:
            await hook(self._grants({supervisor.name: manifest}))
        except RoseyError as exc:
            await self._restore_grants(supervisor.name)
            error = RolledBack(
                supervisor.name, action, "identity", f"the broker refused the new grants: {exc}"
            )
            self._rolled_back(supervisor, error)
            raise error from exc
        return True

    async def _restore_grants(self, name: str) -> None:
        hook = self.manager.on_grants_changed
        if hook is None:
            return
        try:
            await hook(self._grants({}))
        except RoseyError as exc:
            log.error("%s: cannot put its previous grants back on the broker: %s", name, exc)

    def _grants(self, override: dict[str, Manifest]) -> dict[str, list[str]]:
        """Every plugin's grants as it runs, ``override`` instead for the plugins in it."""
        manager = self.manager
        return {
            name: list(override.get(name, supervisor.manifest).permissions)
            for name, supervisor in manager.supervisors.items()
            if name not in manager._refused
        }

    def _adopt(self, supervisor: PluginSupervisor, candidate: Candidate) -> None:
        """``candidate``'s manifest is the plugin's now: record, commands, dependencies."""
        manager, name = self.manager, supervisor.name
        supervisor.manifest = candidate.manifest
        supervisor.folder = candidate.found.folder
        manager.bounds[name] = candidate.notes
        for note in candidate.notes:
            log.warning("%s: %s (%s)", name, note, candidate.found.manifest_path)
        manager._commands.release(name)
        manager._commands.claim(name, candidate.manifest.commands)
        manager._resolve()

    @staticmethod
    def _rolled_back(supervisor: PluginSupervisor, error: RolledBack) -> None:
        supervisor.last_error = str(error)
        supervisor._mark(
            f"{error.action} {'rolled back' if error.action == 'reload' else 'refused'}"
        )
        log.warning("%s", error)
