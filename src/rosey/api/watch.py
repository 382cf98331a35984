"""``rosey run --watch``: reload a plugin when the files in its folder change (for authors).

Changes are collected with ``watchfiles`` (inotify through Rust's ``notify``) and debounced:
an editor's burst of writes (temporary file, rename, chmod) is one reload. Which plugins a
batch of changes concerns is pure (``plugins_changed``): files under a plugin's folder, apart
from bytecode, editor swap and backup files and hidden files. Each reload is the manager's
(``PluginManager.reload_plugin``): a broken save rolls back, the old instance keeps serving and
the reason is logged (the console shows warnings); the next good save goes through. A plugin
that was not running when its files changed (a crash on the previous save) is started.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from rosey.errors import RoseyError
from rosey.lifecycle.states import UP, State

if TYPE_CHECKING:
    from rosey.manager.manager import PluginManager

__all__ = ["PluginWatcher", "plugins_changed"]

log = logging.getLogger("rosey.watch")

#: File names a save never concerns: bytecode, editor swap/backup files.
_IGNORED_SUFFIXES = (".pyc", ".pyo", ".swp", ".swx", ".swo", "~", ".tmp")
_IGNORED_PARTS = ("__pycache__", ".git", ".mypy_cache", ".pytest_cache", ".ruff_cache")


def plugins_changed(changed: Iterable[str], folders: Mapping[Path, str]) -> set[str]:
    """The plugins whose folder (``{folder: plugin}``, resolved) holds one of ``changed``
    (paths), not counting bytecode, editor swap/backup files and hidden files."""
    found: set[str] = set()
    for text in changed:
        path = Path(text)
        if path.name.endswith(_IGNORED_SUFFIXES) or path.name.startswith((".", "#")):
            continue
        for folder, plugin in folders.items():
            if path == folder or folder in path.parents:
                inside = path.relative_to(folder).parts
                if not any(part in _IGNORED_PARTS or part.startswith(".") for part in inside):
                    found.add(plugin)
    return found


class PluginWatcher:
    """Watches every plugin folder of one manager and reloads what changed."""

    def __init__(self, manager: PluginManager, *, debounce_ms: int = 300) -> None:
        self.manager = manager
        self.debounce_ms = debounce_ms
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def folders(self) -> dict[Path, str]:
        """``{folder: plugin}`` of the plugins a reload can take (connectors: not)."""
        return {
            supervisor.folder.resolve(): name
            for name, supervisor in self.manager.supervisors.items()
            if supervisor.manifest.kind == "plugin"
            and supervisor.manifest.entrypoint != "none:None"
        }

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="plugin-watch")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            try:
                async with asyncio.timeout(5):
                    await self._task
            except TimeoutError:
                self._task.cancel()
            except Exception:
                log.exception("watch: failed")

    async def _run(self) -> None:
        from watchfiles import awatch  # only `rosey run --watch` needs it

        folders = self.folders()
        if not folders:
            log.warning("watch: no plugin folders to watch")
            return
        log.warning(
            "watch: reloading plugins when their files change (%s)",
            ", ".join(sorted(folders.values())),
        )
        async for changes in awatch(
            *folders, debounce=self.debounce_ms, stop_event=self._stop, recursive=True
        ):
            for name in sorted(plugins_changed((path for _, path in changes), folders)):
                await self._reload(name)

    async def _reload(self, name: str) -> None:
        manager = self.manager
        try:
            status = await manager.reload_plugin(name)
        except RoseyError as exc:
            log.error("watch: %s", exc)
            return
        supervisor = manager.supervisors[name]
        if supervisor.state not in UP and supervisor.state is not State.DISABLED:
            try:
                status = await manager.start_plugin(name)
            except RoseyError as exc:
                log.error("watch: %s changed but does not start: %s", name, exc)
                return
        log.warning(
            "watch: %s reloaded: version %s, %s (pid %s)",
            name,
            status["version"],
            status["state"],
            status["stats"]["pid"],
        )
