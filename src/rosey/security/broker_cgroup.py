"""The embedded nats-server in a memory cgroup of its own, where the host offers one.

The broker serves every plugin; quotas per account bound what each may hold, and this bounds
the whole: whatever slips past them (many plugins at their quotas, a server bug), the kernel
holds the server to ``memory_mb`` instead of letting it take the host. ``GOMEMLIMIT`` (set by
``rosey.bus.server``) is the soft layer below: the Go collector works harder as the server
nears it. Where no memory controller is usable (no cgroups, or v2 without delegation), only
that soft layer remains, and the log says so once at start.

The folder sits beside the sandbox's plugin group, named like it
(``rosey-<family>-<bot pid>-<bot start>-broker``): a bot that finds it with a dead owner
removes it with the rest of the stale groups of its state dir.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from rosey.sandbox import reaper
from rosey.sandbox.cgroups import GROUP_PREFIX
from rosey.sandbox.host import CgroupHost
from rosey.sandbox.limits import ResourceLimits, Setting, v1_settings, v2_settings

__all__ = ["BrokerCgroup", "memory_settings"]

log = logging.getLogger("rosey.security")


def memory_settings(version: str, memory_mb: int) -> list[Setting]:
    """The memory files to write for the broker's cgroup (the plugins' own table)."""
    limits = ResourceLimits(memory_mb=memory_mb)
    return (v2_settings if version == "v2" else v1_settings)("memory", limits)


@dataclass
class BrokerCgroup:
    """One bot's broker cgroup: ``place`` the server in it, ``remove`` it after it stopped."""

    host: CgroupHost
    family: str
    owner: int
    memory_mb: int
    folder: Path | None = None
    layer: str | None = None

    def place(self, pid: int) -> str | None:
        """Move ``pid`` into a new memory cgroup; the layer (``cgroup-v1-memory``...) or None.

        Never raises: a host that refuses any step leaves the server where it was, logged.
        """
        memory = self.host.controllers.get("memory")
        if memory is None:
            log.warning(
                "nats-server: no usable memory cgroup on this host; its memory is bounded by "
                "GOMEMLIMIT (soft) and the per-plugin quotas only"
            )
            return None
        version, own = memory
        if version == "v2" and "memory" not in _read(own / "cgroup.subtree_control").split():
            log.warning(
                "nats-server: the memory controller is not delegated to %s; its memory is "
                "bounded by GOMEMLIMIT (soft) and the per-plugin quotas only",
                own,
            )
            return None
        start = reaper.start_time(self.owner) or 0
        folder = own / f"{GROUP_PREFIX}{self.family}-{self.owner}-{start}-broker"
        try:
            folder.mkdir(exist_ok=True)
            self.folder = folder
            for setting in memory_settings(version, self.memory_mb):
                try:
                    (folder / setting.file).write_text(setting.value)
                except OSError:
                    if setting.required:
                        raise
            (folder / "cgroup.procs").write_text(str(pid))
        except OSError as exc:
            log.warning(
                "nats-server: cannot confine it in memory cgroup %s (%s); its memory is bounded "
                "by GOMEMLIMIT (soft) and the per-plugin quotas only",
                folder,
                exc,
            )
            self.remove()
            return None
        self.layer = f"cgroup-{version}-memory"
        log.info(
            "nats-server (pid %s) confined by %s: %d MB (%s)",
            pid,
            self.layer,
            self.memory_mb,
            folder,
        )
        return self.layer

    def remove(self) -> None:
        """Remove the folder (after the server stopped; a leftover process is killed)."""
        if self.folder is None:
            return
        folder, self.folder = self.folder, None
        reaper.kill_cgroup(str(folder))
        if not reaper.remove_cgroup(str(folder)):
            log.warning("nats-server: could not remove cgroup %s", folder)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""
