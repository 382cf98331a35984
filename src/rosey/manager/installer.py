"""Install, update, roll back and remove plugins of a running bot (DESIGN 2.10).

Every change is checked whole before anything changes (``rosey.plugins.install_rules``: the
manifest and entrypoint, the name, command claims, the dependency graph, ``requires_rosey``,
the version rule; the requirements' environment is built through
``rosey.sandbox.environments.EnvironmentStore``: a failed build is a refusal), shows the
grants in words (``rosey.plugins.grant_words``) and needs ``yes`` to accept them; then the
disk changes in one rename (``rosey.plugins.store``) and the running bot takes it:

- install → ``rescan`` (the bot gives it a broker identity) and start; a plugin that does not
  start is removed again;
- update / rollback → the folder is swapped and the plugin reloaded (``reload_plugin``: the new
  version starts beside the old and takes over); a failed reload swaps the folder back;
  a plugin that is not running is re-read (forgotten and rescanned) and stays stopped;
- remove → stopped (its dependents first, named in the reply) and forgotten; its folder is
  kept under ``versions/`` and its data folder stays, unless ``purge``.

One change at a time per bot (a lock); reads and copies run in a thread.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import rosey
from rosey.errors import (
    ConfirmationNeeded,
    InstallRefused,
    PluginNotFound,
    RoseyError,
    StartFailed,
)
from rosey.lifecycle.states import UP
from rosey.manager.change_result import ChangeResult
from rosey.manager.overlay import effective_manifest
from rosey.plugins import install_rules as rules
from rosey.plugins.discovery import DiscoveredPlugin
from rosey.plugins.grant_words import grant_change, install_text, update_text
from rosey.plugins.store import PluginStore, Staged

if TYPE_CHECKING:
    from rosey.manager.manager import PluginManager
    from rosey.manager.supervisor import PluginSupervisor

__all__ = ["ChangeResult", "Installer"]

log = logging.getLogger("rosey.manager")

_T = TypeVar("_T")
_LOCKS: weakref.WeakKeyDictionary[PluginManager, asyncio.Lock] = weakref.WeakKeyDictionary()


class Installer:
    """The install/update/rollback/remove actions over one running ``PluginManager``."""

    def __init__(self, manager: PluginManager) -> None:
        self.manager = manager
        config = manager.config
        self.store = PluginStore(config.plugins_dir[0], config.state_dir)
        self.lock = _LOCKS.setdefault(manager, asyncio.Lock())

    # -- the actions --------------------------------------------------------------------------

    async def install(self, source: str, *, yes: bool, expected: str | None = None) -> ChangeResult:
        async with self.lock:
            path = _source_path(source, "install", expected)
            first = self.store.plugins_dir
            if (first / "plugin.yaml").is_file():
                raise InstallRefused(
                    expected or "",
                    "install",
                    [
                        f"the first plugins folder {first} is a plugin's own folder; list a "
                        "folder of plugins first in the config's plugins_dir"
                    ],
                )
            staged = await self._stage(expected or "", "install", self.store.stage, path, None)
            try:
                found = await self._read(staged, "install", expected)
                name, manifest = found.name, effective_manifest(self.manager.config, found).manifest
                problems = rules.name_problems(
                    name,
                    installed={n: str(s.folder) for n, s in self.manager.supervisors.items()},
                    target_exists=self.store.target(name).exists(),
                    updating=None,
                )
                if expected is not None and name != expected:
                    problems.append(f"the source holds plugin {name!r}, not {expected!r}")
                problems += self._fit(found)
                if problems:
                    raise InstallRefused(name, "install", problems)
                await self._ensure_environment(found, "install")
                text = install_text(name, found.manifest.version, manifest.permissions)
                if not yes:
                    raise ConfirmationNeeded(name, "install", text)
                target = await asyncio.to_thread(self.store.place, staged, name)
            except BaseException:
                await asyncio.to_thread(self.store.discard, staged)
                raise
            log.info("install: %s %s placed in %s", name, found.manifest.version, target)
            report = [text.splitlines()[0].replace(" may ", " installed; it may ", 1)]
            report += await self._bring_in(name, target)
            return self._result(name, "install", found.manifest.version, None, report)

    async def update(self, name: str, source: str, *, yes: bool, force: bool) -> ChangeResult:
        async with self.lock:
            supervisor = self._installed(name, "update")
            path = _source_path(source, "update", name)
            staged = await self._stage(name, "update", self.store.stage, path, supervisor.folder)
            try:
                found = await self._read(staged, "update", name)
                problems = rules.name_problems(
                    found.name, installed={}, target_exists=False, updating=name
                )
                old_version = supervisor.manifest.version
                problem = rules.version_problem(old_version, found.manifest.version, force=force)
                problems += [problem] if problem else []
                problems += self._fit(found)
                if problems:
                    raise InstallRefused(name, "update", problems)
                await self._ensure_environment(found, "update")
                new = effective_manifest(self.manager.config, found).manifest
                change = grant_change(supervisor.manifest.permissions, new.permissions)
                text = update_text(name, old_version, found.manifest.version, change)
                if change.added and not yes:
                    raise ConfirmationNeeded(name, "update", text)
            except BaseException:
                await asyncio.to_thread(self.store.discard, staged)
                raise
            report = [text.splitlines()[0]]
            report += await self._swap(supervisor, staged, old_version, lambda: None)
            return self._result(name, "update", found.manifest.version, old_version, report)

    async def rollback(self, name: str) -> ChangeResult:
        async with self.lock:
            supervisor = self._installed(name, "rollback")
            kept = await asyncio.to_thread(self.store.kept, name)
            if not kept:
                raise InstallRefused(
                    name,
                    "rollback",
                    [f"no earlier version of {name} is kept (update keeps the one it replaces)"],
                )
            previous = kept[0]
            staged = await self._stage(
                name, "rollback", self.store.stage_kept, previous, supervisor.folder
            )
            try:
                found = await self._read(staged, "rollback", name)
                problems = self._fit(found)
                if problems:
                    raise InstallRefused(name, "rollback", problems)
                await self._ensure_environment(found, "rollback")
            except BaseException:
                await asyncio.to_thread(self.store.discard, staged)
                raise
            current = supervisor.manifest.version
            report = [f"rollback plugin {name} {current} → {previous.version}"]

            def forget_previous() -> None:
                self.store.forget_kept(name, previous.version)

            report += await self._swap(supervisor, staged, current, forget_previous)
            return self._result(name, "rollback", previous.version, current, report)

    async def remove(self, name: str, *, purge: bool) -> ChangeResult:
        async with self.lock:
            supervisor = self._installed(name, "remove")
            folder = supervisor.folder.resolve()
            configured = {p.resolve() for p in self.manager.config.plugins_dir}
            if folder in configured or folder.parent not in configured:
                raise InstallRefused(
                    name,
                    "remove",
                    [
                        f"its folder {folder} is named by the config's plugins_dir itself, not "
                        "found in a plugins folder: take it out of the config instead"
                    ],
                )
            version = supervisor.manifest.version
            stopped = await self.manager.forget_plugin(name)
            report = [f"removed plugin {name} {version}"]
            if stopped:
                report.append(
                    "stopped its dependents (they now miss a dependency): " + ", ".join(stopped)
                )
            if purge:
                await asyncio.to_thread(shutil.rmtree, folder)
                deleted = await asyncio.to_thread(self.store.purge, name)
                deleted += await self._purge_bucket(name)
                report.append("purged: " + (", ".join(deleted) or "it had no data"))
            else:
                kept = await asyncio.to_thread(self.store.keep, name, version, folder)
                report.append(f"its code is kept in {kept}")
                report.append(
                    f"its data folder is kept: {self.manager.ctx.data_dir(name)} (--purge deletes)"
                )
            log.info("remove: %s %s%s", name, version, " (purged)" if purge else "")
            return self._result(name, "remove", None, version, report, status=False)

    # -- steps --------------------------------------------------------------------------------

    async def _purge_bucket(self, name: str) -> list[str]:
        """Delete the removed plugin's storage bucket; what to report (the folder is gone
        already, so a broker that refuses is said, not raised)."""
        purge = self.manager.on_storage_purged
        if purge is None:
            return []
        try:
            return ["its storage bucket"] if await purge(name) else []
        except RoseyError as exc:
            log.warning("remove --purge: %s: cannot delete its storage bucket: %s", name, exc)
            return [f"not its storage bucket ({exc})"]

    def _installed(self, name: str, action: str) -> PluginSupervisor:
        supervisor = self.manager.supervisors.get(name)
        if supervisor is None:
            raise PluginNotFound(name, list(self.manager.supervisors))
        refused: dict[str, str] = getattr(self.manager, "_refused", {})
        if name in refused:  # several folders declare the name: none of them is the plugin
            raise InstallRefused(name, action, [refused[name]])
        if supervisor.manifest.kind == "connector":
            raise InstallRefused(
                name,
                action,
                [f"{name} is a connector instance: change it in the config's connectors:"],
            )
        return supervisor

    async def _stage(
        self,
        name: str,
        action: str,
        stage: Callable[[_T, Path | None], Staged],
        what: _T,
        beside: Path | None,
    ) -> Staged:
        """Unpack or copy next to where it will live; a folder the bot cannot write is a
        refusal naming it (not an internal error)."""
        try:
            return await asyncio.to_thread(stage, what, beside)
        except OSError as exc:
            where = exc.filename or (beside.parent if beside else self.store.plugins_dir)
            raise InstallRefused(
                name, action, [f"cannot write {where}: {exc.strerror or exc}"]
            ) from None

    async def _read(self, staged: Staged, action: str, expected: str | None) -> DiscoveredPlugin:
        """The staged plugin (``InstallRefused`` with every manifest problem)."""
        found = await self.manager.discover([staged.root])
        name = expected or ""
        if found.problems:
            shown = [str(p).replace(str(staged.root), "(source)") for p in found.problems]
            raise InstallRefused(name, action, shown)
        if not found.plugins:
            raise InstallRefused(
                name, action, ["it is a connector (kind: connector): name it in connectors:"]
            )
        return next(iter(found.plugins.values()))

    def _fit(self, found: DiscoveredPlugin) -> list[str]:
        """Whether ``found`` fits among the other plugins and this Rosey."""
        name = found.name
        manifest = effective_manifest(self.manager.config, found).manifest
        others = {n: s for n, s in self.manager.supervisors.items() if n != name}
        problems = rules.claim_problems(
            name, manifest.commands, {n: s.manifest.commands for n, s in others.items()}
        )
        problems += rules.dependency_problems(
            name, manifest.dependencies, {n: s.manifest.dependencies for n, s in others.items()}
        )
        problem = rules.rosey_version_problem(found.manifest.requires_rosey, rosey.__version__)
        return problems + ([problem] if problem else [])

    async def _ensure_environment(self, found: DiscoveredPlugin, action: str) -> None:
        """Build the plugin's own environment now (never at start); a failure refuses."""
        requirements = list(getattr(found.manifest, "requirements", []) or [])
        if not requirements:
            return
        from rosey.sandbox.environments import EnvironmentStore

        store = EnvironmentStore(self.manager.config.state_dir.resolve() / "envs")
        try:
            await store.ensure(requirements)
        except RoseyError as exc:
            raise InstallRefused(found.name, action, [str(exc)]) from None

    async def _bring_in(self, name: str, target: Path) -> list[str]:
        """A newly placed plugin joins the bot and starts; one that does not start is removed."""
        manager = self.manager
        try:
            await manager.rescan()
        except BaseException:
            await asyncio.to_thread(shutil.rmtree, target, True)
            raise
        supervisor = manager.supervisors.get(name)
        if supervisor is None:
            await asyncio.to_thread(shutil.rmtree, target, True)
            raise InstallRefused(name, "install", ["the bot did not take it (see its log)"])
        if not supervisor.enabled:
            return [f"not started: {supervisor.last_error or 'disabled'}"]
        try:
            await manager.start_plugin(name)
        except StartFailed as exc:
            await manager.forget_plugin(name)
            await asyncio.to_thread(shutil.rmtree, target, True)
            raise InstallRefused(
                name, "install", [f"it did not start, removed again: {exc}"]
            ) from None
        except RoseyError as exc:
            return [f"installed but not started: {exc}"]
        return ["started: it answers " + ", ".join(f"!{c}" for c in supervisor.manifest.commands)]

    async def _swap(
        self,
        supervisor: PluginSupervisor,
        staged: Staged,
        old_version: str,
        after: Callable[[], None],
    ) -> list[str]:
        """Swap the staged folder in, have the bot take it; undo both if that fails."""
        name, folder = supervisor.name, supervisor.folder
        old_at = await asyncio.to_thread(self.store.swap_in, staged, folder)
        try:
            lines = await self._take(name)
        except BaseException:
            await asyncio.to_thread(self.store.unswap, staged, folder)
            if name not in self.manager.supervisors:  # re-read while stopped: read the old back
                await self.manager.rescan()
            raise
        await asyncio.to_thread(after)
        kept = await asyncio.to_thread(self.store.keep, name, old_version, old_at, staged)
        return [*lines, f"version {old_version} is kept for rollback in {kept}"]

    async def _take(self, name: str) -> list[str]:
        """The bot takes the plugin's new folder: ``reload_plugin`` (a running plugin is
        replaced without a restart, a stopped one takes the new manifest and stays stopped)."""
        manager = self.manager
        was_up = manager.supervisors[name].state in UP
        reload = getattr(manager, "reload_plugin", None)
        if reload is not None:
            await reload(name)
            if was_up:
                version = manager.supervisors[name].manifest.version
            return [f"reloaded: {version} took over without a restart"]
            return ["read again; it stays stopped as it was"]
        # A bot without reload: stop, re-read through rescan, start again if it ran.
        await manager.forget_plugin(name, forget_choice=False)
        await manager.rescan()
        if name not in manager.supervisors:
            raise InstallRefused(name, "update", ["the bot did not take the new version"])
        if was_up:
            await manager.start_plugin(name)
            return ["restarted with the new version (this bot has no reload)"]
        return ["read again; it stays stopped as it was"]

    def _result(
        self,
        name: str,
        action: str,
        version: str | None,
        previous: str | None,
        report: list[str],
        *,
        status: bool = True,
    ) -> ChangeResult:
        current = self.manager.get_plugin_status(name) if status else None
        return {
            "plugin": name,
            "action": action,
            "version": version,
            "previous": previous,
            "report": report,
            "status": current,
        }


def _source_path(source: str, action: str, name: str | None) -> Path:
    path = Path(source)
    if not path.is_absolute():
        raise InstallRefused(
            name or "",
            action,
            [f"the source {source!r} must be an absolute path on the bot's host"],
        )
    return path
