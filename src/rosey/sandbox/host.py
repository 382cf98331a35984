"""What the host offers for confining plugins: which cgroup hierarchies we may use, and where.

Detection reads two files, ``/proc/self/mountinfo`` (where each hierarchy is mounted) and
``/proc/self/cgroup`` (which cgroup this process is in, per hierarchy), and checks that our own
cgroup directory in each hierarchy is writable: plugin cgroups are created *below our own*, so
the bot never needs more than its own subtree.

The outcome, ``CgroupHost``, names for each limit controller (``memory``, ``cpu``, ``pids``)
the hierarchy and directory to use, preferring cgroup v2 when the unified hierarchy offers the
controller and falling back to a v1 hierarchy; plus the unified directory (if any) even when it
offers no controller, because ``cgroup.kill`` and ``cgroup.events`` work without controllers
(hybrid hosts: v1 limits, v2 kill). Hosts with neither get an empty ``CgroupHost`` and the
sandbox falls back to rlimits alone.

Parsing and planning are pure (paths and the writability test are injectable), so every host
layout is a table row in the unit tests.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

#: The controllers that enforce a manifest's ``limits``.
LIMIT_CONTROLLERS = ("memory", "cpu", "pids")
#: The name ``CgroupHost.hierarchies`` uses for the unified (v2) hierarchy.
UNIFIED = "unified"


@dataclass(frozen=True)
class Mount:
    """One cgroup filesystem mount from ``mountinfo``."""

    mountpoint: Path
    root: str  # the directory of the hierarchy this mount shows at ``mountpoint``
    fstype: str  # "cgroup" (v1) or "cgroup2"
    options: frozenset[str]  # v1: the controllers ("memory", "cpu", "name=systemd", ...)


@dataclass(frozen=True)
class CgroupHost:
    """Where plugin cgroups can go on this host; empty when cgroups are unusable."""

    #: Limit controller → ("v1" | "v2", our own cgroup directory in that hierarchy).
    controllers: Mapping[str, tuple[str, Path]] = field(default_factory=dict)
    #: Our own directory in the unified hierarchy (for ``cgroup.kill``), if writable.
    unified: Path | None = None
    #: Why something is not available, in words (logged at start, shown in the docs).
    notes: tuple[str, ...] = ()

    @property
    def layers(self) -> list[str]:
        """The cgroup layers limits go through: ``cgroup-v2``, ``cgroup-v1`` or none."""
        versions = {version for version, _ in self.controllers.values()}
        return [f"cgroup-{v}" for v in ("v2", "v1") if v in versions]

    @property
    def hierarchies(self) -> dict[str, Path]:
        """Each hierarchy to create plugin cgroups in → our own directory there.

        Keys are the v1 controller names and ``unified``; a v1 hierarchy mounting several
        controllers (``cpu,cpuacct``) appears once per limit controller it holds, same path.
        """
        found: dict[str, Path] = {}
        for name, (version, path) in self.controllers.items():
            found[UNIFIED if version == "v2" else name] = path
        if self.unified is not None:
            found[UNIFIED] = self.unified
        return found

    @property
    def usable(self) -> bool:
        return bool(self.hierarchies)


def _unescape(text: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as ``\\ooo`` octal."""
    if "\\" not in text:
        return text
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and text[i + 1 : i + 4].isdigit():
            out.append(chr(int(text[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[Mount]:
    """The cgroup and cgroup2 mounts listed in a ``/proc/PID/mountinfo`` text."""
    mounts: list[Mount] = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 3 or tail[0] not in ("cgroup", "cgroup2"):
            continue
        mounts.append(
            Mount(
                mountpoint=Path(_unescape(fields[4])),
                root=_unescape(fields[3]),
                fstype=tail[0],
                options=frozenset(tail[2].split(",")),
            )
        )
    return mounts


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """``/proc/PID/cgroup`` → controller (or ``name=...``) → path; the v2 entry under ``""``."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, path = parts
        if hierarchy == "0" and controllers == "":
            found[""] = path
            continue
        for controller in controllers.split(","):
            found[controller] = path
    return found


def _own_dir(mount: Mount, path: str) -> Path | None:
    """Our cgroup ``path`` as a directory under ``mount``, or None if the mount cannot show it."""
    root = mount.root.rstrip("/")
    if root and path != root and not path.startswith(root + "/"):
        return None
    relative = path[len(root) :].lstrip("/")
    return mount.mountpoint / relative if relative else mount.mountpoint


def _usable_dir(path: Path) -> bool:
    return (path / "cgroup.procs").is_file() and os.access(path, os.W_OK)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def plan_host(
    mounts: Iterable[Mount],
    membership: Mapping[str, str],
    *,
    usable: Callable[[Path], bool] = _usable_dir,
    read: Callable[[Path], str] = _read,
) -> CgroupHost:
    """Choose, per limit controller, the hierarchy and our own directory in it.

    ``usable(dir)`` says whether we may create child cgroups in ``dir`` (default: it is a
    cgroup directory we can write to); ``read`` reads an interface file (v2
    ``cgroup.controllers``). Both are injectable so host layouts can be tested as data.
    """
    mounts = list(mounts)
    notes: list[str] = []
    controllers: dict[str, tuple[str, Path]] = {}

    unified: Path | None = None
    v2_mount = next((m for m in mounts if m.fstype == "cgroup2"), None)
    if v2_mount is not None and "" in membership:
        own = _own_dir(v2_mount, membership[""])
        if own is None:
            notes.append(f"cgroup v2: our cgroup {membership['']} is outside {v2_mount.mountpoint}")
        elif not usable(own):
            notes.append(f"cgroup v2: {own} is not writable")
        else:
            unified = own
            offered = set(read(own / "cgroup.controllers").split())
            for name in LIMIT_CONTROLLERS:
                if name in offered:
                    controllers[name] = ("v2", own)

    for name in LIMIT_CONTROLLERS:
        if name in controllers:
            continue
        mount = next((m for m in mounts if m.fstype == "cgroup" and name in m.options), None)
        if mount is None:
            if unified is None:
                notes.append(f"{name}: no cgroup hierarchy offers this controller")
            else:
                notes.append(f"{name}: the unified hierarchy does not offer it; no v1 mount")
            continue
        if name not in membership:
            notes.append(f"{name}: /proc/self/cgroup does not list this controller")
            continue
        own = _own_dir(mount, membership[name])
        if own is None:
            notes.append(f"{name}: our cgroup {membership[name]} is outside {mount.mountpoint}")
        elif not usable(own):
            notes.append(f"{name}: {own} is not writable (cgroup v1)")
        else:
            controllers[name] = ("v1", own)
    return CgroupHost(controllers=controllers, unified=unified, notes=tuple(notes))


def detect_host(proc: Path = Path("/proc/self")) -> CgroupHost:
    """Inspect this host (``proc`` is injectable for tests) and plan where plugin cgroups go."""
    try:
        mountinfo = (proc / "mountinfo").read_text()
        membership = (proc / "cgroup").read_text()
    except OSError as exc:
        return CgroupHost(notes=(f"cannot read {proc}/mountinfo or cgroup: {exc}",))
    return plan_host(parse_mountinfo(mountinfo), parse_proc_cgroup(membership))
