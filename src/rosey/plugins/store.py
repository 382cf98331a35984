"""Installed plugins on disk: staging, the atomic swap, kept versions, removal (file I/O only).

```
<plugins_dir[0]>/<name>/                  an installed plugin (the config's first plugins folder)
<folder's parent>/.rosey-staging/<id>/    a source being unpacked and checked (same filesystem,
                                          so it moves into place by rename)
<state_dir>/versions/<name>/<version>/    versions replaced by an update or a rollback, or removed
<state_dir>/versions/<name>/history.json  their order, newest last: what ``rollback`` restores
<state_dir>/data/<name>/                  the plugin's data folder (kept by remove, not by --purge)
```

An update swaps the new folder and the installed one in one ``renameat2(RENAME_EXCHANGE)``
(where the kernel has it; else two renames in a row), so the plugins folder never shows a
half-copied plugin, then keeps the old one under ``versions/``. Every step has its undo
(:meth:`PluginStore.unswap`) for a reload that fails after the swap.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rosey.plugins.unpack import LIMITS, Limits, unpack

__all__ = ["Kept", "PluginStore", "Staged", "exchange"]

STAGING = ".rosey-staging"
_HISTORY = "history.json"
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _renameat2() -> Callable[..., int] | None:
    """libc's ``renameat2``, or None (an old libc)."""
    import ctypes.util  # here: only a reload or update swaps folders

    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    found: Callable[..., int] | None = getattr(libc, "renameat2", None)
    return found


def exchange(a: Path, b: Path) -> None:
    """Swap two paths on one filesystem: atomically where ``renameat2`` exists."""
    renameat2 = _renameat2()
    if renameat2 is not None:
        result = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
        if result == 0:
            return
        import ctypes

        code = ctypes.get_errno()
        if code not in (errno.EINVAL, errno.ENOSYS):  # EINVAL: the filesystem cannot exchange
            raise OSError(code, os.strerror(code), str(a))
    spare = a.with_name(a.name + ".swap")
    os.rename(a, spare)
    os.rename(b, a)
    os.rename(spare, b)


@dataclass(frozen=True)
class Staged:
    """A source unpacked next to where it will live: ``root`` holds its ``plugin.yaml``."""

    root: Path
    scratch: Path


@dataclass(frozen=True)
class Kept:
    """A version kept for ``rollback``."""

    version: str
    folder: Path


class PluginStore:
    """The plugin folders and the kept versions of one bot."""

    def __init__(self, plugins_dir: Path, state_dir: Path, limits: Limits = LIMITS) -> None:
        self.plugins_dir = plugins_dir
        self.versions_dir = state_dir / "versions"
        self.data_root = state_dir / "data"
        self.quota_root = state_dir / "quota"
        self.limits = limits

    def target(self, name: str) -> Path:
        """Where a new plugin ``name`` is installed."""
        return self.plugins_dir / name

    # -- staging ------------------------------------------------------------------------------

    def stage(self, source: Path, beside: Path | None = None) -> Staged:
        """Unpack ``source`` into a fresh folder in the same folder as ``beside`` (default: the
        plugins folder), with modes a plugin's own user can read."""
        parent = (beside.parent if beside is not None else self.plugins_dir).resolve()
        parent.mkdir(parents=True, exist_ok=True)
        scratch = parent / STAGING / secrets.token_hex(6)
        scratch.mkdir(parents=True)
        try:
            root = unpack(source, scratch / "unpacked", self.limits)
            _readable(root)
        except BaseException:
            self.discard(Staged(scratch, scratch))
            raise
        return Staged(root, scratch)

    def stage_kept(self, kept: Kept, beside: Path | None) -> Staged:
        """A kept version copied next to ``beside`` (it stays kept until the swap succeeds)."""
        parent = (beside.parent if beside is not None else self.plugins_dir).resolve()
        scratch = parent / STAGING / secrets.token_hex(6)
        scratch.mkdir(parents=True)
        root = scratch / "unpacked"
        try:
            shutil.copytree(kept.folder, root, symlinks=True)
        except BaseException:
            self.discard(Staged(scratch, scratch))
            raise
        return Staged(root, scratch)

    def discard(self, staged: Staged) -> None:
        shutil.rmtree(staged.scratch, ignore_errors=True)
        with contextlib.suppress(OSError):
            staged.scratch.parent.rmdir()  # .rosey-staging, when nothing else is in it

    # -- placing ------------------------------------------------------------------------------

    def place(self, staged: Staged, name: str) -> Path:
        """Install: move the staged folder to ``<plugins_dir>/<name>`` (refused if it exists)."""
        target = self.target(name)
        os.mkdir(target)  # fails if anything is there: never overwrite
        try:
            os.rename(staged.root, target)  # an empty folder may be replaced by a rename
        except BaseException:
            with contextlib.suppress(OSError):
                target.rmdir()
            raise
        self.discard(staged)
        return target

    def swap_in(self, staged: Staged, current: Path) -> Path:
        """Update: the staged folder takes ``current``'s place; the old one is now at
        ``staged.root`` (keep it with :meth:`keep` once the change took, or :meth:`unswap`)."""
        exchange(staged.root, current)
        return staged.root

    def unswap(self, staged: Staged, current: Path) -> None:
        """Undo :meth:`swap_in`; the staged folder is discarded."""
        exchange(staged.root, current)
        self.discard(staged)

    def keep(self, name: str, version: str, folder: Path, staged: Staged | None = None) -> Path:
        """Move ``folder`` (a replaced or removed plugin) to ``versions/<name>/<version>``."""
        where = self.versions_dir / name / version
        where.parent.mkdir(parents=True, exist_ok=True)
        if where.exists():
            shutil.rmtree(where)
        shutil.move(str(folder), str(where))
        history = [v for v in self._history(name) if v != version] + [version]
        self._write_history(name, history)
        if staged is not None:
            self.discard(staged)
        return where

    # -- kept versions ------------------------------------------------------------------------

    def kept(self, name: str) -> list[Kept]:
        """Kept versions of ``name``, newest first (the order they were kept in)."""
        found = []
        for version in reversed(self._history(name)):
            folder = self.versions_dir / name / version
            if folder.is_dir():
                found.append(Kept(version, folder))
        return found

    def forget_kept(self, name: str, version: str) -> None:
        """A kept version that is running again: no longer kept."""
        shutil.rmtree(self.versions_dir / name / version, ignore_errors=True)
        self._write_history(name, [v for v in self._history(name) if v != version])

    def purge(self, name: str) -> list[str]:
        """Delete the data folder, kept versions and quota image of ``name``; what was deleted."""
        deleted = []
        data = self.data_root / name
        if data.exists():
            _empty(data)
            with contextlib.suppress(OSError):  # a loop-mounted quota folder stays, empty
                data.rmdir()
            deleted.append(str(data))
        image = self.quota_root / f"{name}.img"
        if image.is_file() and not os.path.ismount(data):
            image.unlink()
            deleted.append(str(image))
        versions = self.versions_dir / name
        if versions.exists():
            shutil.rmtree(versions)
            deleted.append(str(versions))
        return deleted

    def _history(self, name: str) -> list[str]:
        path = self.versions_dir / name / _HISTORY
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return sorted(
                p.name for p in (self.versions_dir / name).glob("*") if p.is_dir()
            )  # lost history: by name
        return [str(v) for v in data] if isinstance(data, list) else []

    def _write_history(self, name: str, versions: list[str]) -> None:
        path = self.versions_dir / name / _HISTORY
        path.parent.mkdir(parents=True, exist_ok=True)
        spare = path.with_suffix(".tmp")
        spare.write_text(json.dumps(versions), encoding="utf-8")
        os.replace(spare, path)


def _readable(root: Path) -> None:
    """Folders 0755, files 0644 (0755 when executable): the plugin's own user reads them."""
    for top, _dirs, files in os.walk(root):
        os.chmod(top, 0o755)
        for name in files:
            path = Path(top) / name
            info = path.lstat()
            if stat.S_ISREG(info.st_mode):
                os.chmod(path, 0o755 if info.st_mode & stat.S_IXUSR else 0o644)


def _empty(folder: Path) -> None:
    for child in folder.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
