"""Plugin cgroups on disk: one group folder per bot, one leaf per plugin process.

Layout, in every hierarchy ``CgroupHost`` chose (our own cgroup directory there = ``OWN``)::

    OWN/rosey-<family>-<pid>-<start>-<n>/                 one bot
    OWN/rosey-<family>-<pid>-<start>-<n>/<plugin>-<pid>/  one plugin process and all it forks
    OWN/rosey-<family>-<pid>-<start>-<n>/standby-<pid>/   the standby (``rosey.sandbox.standby``)

A plugin started from the standby gets its leaf by a rename (v1; v2 cannot rename a cgroup:
there it keeps ``standby-<pid>``, the pid being the plugin's) instead of a move.

``family`` is a hash of the bot's state dir; ``pid`` and ``start`` (its start time) name the bot
process that owns the group (``n`` tells apart several sandboxes of one process). A leaf holds
the plugin's limits; the process is moved in before its bootstrap is sent, so plugin code never
runs outside it, and its children are born inside it. Leaves are removed when the process is
gone (by a worker thread, ``rosey.sandbox.leaf_remover``), the group when the bot stops. A
group of the same family whose owner is no longer running (the bot was SIGKILLed and its
warden failed, or the machine lost power) is emptied and removed by the next bot on that state
dir; a group whose owner still runs (a second bot on the same state dir) is left alone.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from rosey.sandbox import reaper
from rosey.sandbox.host import UNIFIED, CgroupHost
from rosey.sandbox.limits import (
    LimitEvents,
    ResourceLimits,
    Setting,
    parse_counter,
    v1_settings,
    v2_settings,
)
from rosey.sandbox.stats import CgroupCounters

__all__ = ["GROUP_PREFIX", "AttachPrimer", "CgroupGroup", "PluginCgroup", "family_name"]

log = logging.getLogger("rosey.sandbox")

GROUP_PREFIX = "rosey-"
_SEQUENCE = itertools.count(1)


def _write(path: Path, value: str) -> None:
    with open(path, "w") as fh:
        fh.write(value)


def _read(path: Path) -> str:
    """A small cgroup file ("" if unreadable), in three system calls: read when every plugin
    of a bot stops at once."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return ""
    try:
        return os.read(fd, 65536).decode("ascii", "replace")
    except OSError:
        return ""
    finally:
        os.close(fd)


@dataclass
class PluginCgroup:
    """One plugin process's cgroups: where it is, what it may use, and how to end all of it."""

    name: str
    #: Hierarchy (``unified`` or a v1 controller) → this leaf's directory there.
    dirs: dict[str, Path]
    #: Limit controller → the version enforcing it here ("v1" or "v2").
    enforcing: dict[str, str] = field(default_factory=dict)
    _events: LimitEvents | None = None
    #: Everything in it was sent SIGKILL (``kill``): nothing can join it any more.
    _killed: bool = False

    @property
    def layers(self) -> list[str]:
        versions = set(self.enforcing.values())
        return [f"cgroup-{v}" for v in ("v2", "v1") if v in versions]

    @property
    def kill_dir(self) -> Path:
        """The directory whose subtree holds every process (unified first: it has cgroup.kill)."""
        return self.dirs.get(UNIFIED) or self.dirs.get("pids") or next(iter(self.dirs.values()))

    def add(self, pid: int) -> None:
        """Move ``pid`` (with all its threads) into this leaf in every hierarchy."""
        for path in self.dirs.values():
            _write(path / "cgroup.procs", str(pid))

    def members(self) -> set[int]:
        """Every process in the leaf, including ones that left the plugin's session."""
        if self._empty():
            return set()
        return set(reaper.cgroup_pids(str(self.kill_dir)))

    def _empty(self) -> bool:
        """True when the unified leaf says no process is left in it or below (one read of
        ``cgroup.events`` instead of a walk: a stop asks several times, for every plugin at
        once when the bot stops); False when some is, or it cannot tell."""
        unified = self.dirs.get(UNIFIED)
        return unified is not None and "populated 0" in _read(unified / "cgroup.events")

    def counters(self) -> CgroupCounters | None:
        """The files that count the whole tree's CPU, memory and tasks (for sampling without
        walking ``/proc``); None when one of the three is not available here."""
        cpu: Path | None = None
        if UNIFIED in self.dirs and (self.dirs[UNIFIED] / "cpu.stat").exists():
            cpu = self.dirs[UNIFIED] / "cpu.stat"  # v2, also without the cpu controller
        elif "cpu" in self.dirs and (self.dirs["cpu"] / "cpuacct.usage").exists():
            cpu = self.dirs["cpu"] / "cpuacct.usage"  # v1 with cpu,cpuacct mounted together
        memory, pids = self.enforcing.get("memory"), self.enforcing.get("pids")
        if cpu is None or memory is None or pids is None:
            return None
        return CgroupCounters(
            cpu=cpu,
            memory=self.dirs[UNIFIED if memory == "v2" else "memory"] / "memory.stat",
            memory_version=memory,
            tasks=self.dirs[UNIFIED if pids == "v2" else "pids"] / "pids.current",
            procs=self.kill_dir / "cgroup.procs",
        )

    def kill(self, timeout: float = 2.0) -> int:
        """SIGKILL everything in the leaf; how many processes were found.

        Returns once every process in it has been sent SIGKILL, not once they are gone: a
        killed tree leaves in its own time (milliseconds: each process tears its memory
        down), and neither a restart nor the event loop need wait for that (``remove``
        does, to remove the leaf). Once that is done a second call does nothing: a process
        with SIGKILL pending forks no more, so nothing new can be in the leaf (and a second
        ``cgroup.kill`` write would wait for the kernel's cgroup lock, see ``AttachPrimer``).
        """
        if self._killed or self._empty():
            return 0
        found = reaper.kill_cgroup(str(self.kill_dir), timeout, wait=False)
        self._killed = True
        return found

    def events(self) -> LimitEvents:
        """OOM kills and refused forks so far (the last values read once the leaf is gone)."""
        if self._events is not None:
            return self._events
        oom_kills = forks_refused = 0
        memory = self.enforcing.get("memory")
        if memory == "v1":
            oom_kills = parse_counter(_read(self.dirs["memory"] / "memory.oom_control"), "oom_kill")
        elif memory == "v2":
            oom_kills = parse_counter(_read(self.dirs[UNIFIED] / "memory.events"), "oom_kill")
        pids = self.enforcing.get("pids")
        if pids is not None:
            folder = self.dirs[UNIFIED if pids == "v2" else "pids"]
            forks_refused = parse_counter(_read(folder / "pids.events"), "max")
        return LimitEvents(oom_kills=oom_kills, forks_refused=forks_refused)

    def keep_events(self) -> None:
        """Read the final counters now: ``events`` answers them once the leaf is gone."""
        if self._events is None:
            self._events = self.events()

    def remove(self) -> bool:
        """Kill what is left, keep the final counters, remove the leaf everywhere."""
        self.keep_events()
        if not self._empty():
            reaper.kill_cgroup(str(self.kill_dir))  # until it is empty: then it can go
        removed = True
        for path in self.dirs.values():
            try:
                os.rmdir(path)  # a leaf without sub-cgroups: one call (all of them, usually)
            except FileNotFoundError:
                pass
            except OSError:
                removed = reaper.remove_cgroup(str(path)) and removed
        if not removed:
            log.warning("%s: could not remove all of its cgroups (%s)", self.name, self.dirs)
        return removed


class AttachPrimer:
    """Takes the kernel's cgroup attach lock ahead of a plugin's move into its leaf.

    The first write to a ``cgroup.procs`` after a quiet moment waits for a whole RCU grace
    period (the global threadgroup lock switching to its writer mode: ~6-25 ms here), and
    writes that follow within that period do not. A spawn therefore primes it (``prime``, at
    its start) with a move of nothing: this process into the cgroup it is in already, in a
    thread of its own; by the time the new process exists (the fork server's round trip) and
    is moved, the wait is over or shorter. Errors are ignored: the lock was taken either way.
    A crash primes it sooner, when its tree is killed (``SandboxConfinement.restart_ahead``):
    the restart that follows then finds the wait over. Meanwhile the kernel's cgroup mutex is
    held, so whatever else creates, writes or removes cgroups waits too: the event loop does
    none of that on a restart's way (``PluginCgroup.kill`` once only,
    ``rosey.sandbox.leaf_remover``).
    """

    def __init__(self, procs: Path | None) -> None:
        """``procs``: the ``cgroup.procs`` of a cgroup this process is in (None: never)."""
        self.procs = procs
        self._busy = threading.Lock()

    def prime(self) -> bool:
        """Start a priming write unless one is under way; whether one was started."""
        if self.procs is None or not self._busy.acquire(blocking=False):
            return False
        try:
            threading.Thread(target=self._write, name="rosey cgroup primer", daemon=True).start()
        except RuntimeError:  # no thread now (the interpreter is ending): nothing to gain
            self._busy.release()
            return False
        return True

    def _write(self) -> None:
        try:
            assert self.procs is not None
            _write(self.procs, str(os.getpid()))
        except OSError:
            pass
        finally:
            self._busy.release()


class CgroupGroup:
    """One bot's cgroup folders, and the factory of its plugin leaves."""

    def __init__(self, host: CgroupHost, family: str, owner: int | None = None) -> None:
        """``family`` groups the bots of one state dir; ``owner`` is the bot's pid (ours)."""
        self.host = host
        self.family = family
        owner = os.getpid() if owner is None else owner
        self.group = f"{family}-{owner}-{reaper.start_time(owner) or 0}-{next(_SEQUENCE)}"
        self.dirs: dict[str, Path] = {}
        #: Limit controller → version, for the controllers this group could really enable.
        self.enforcing: dict[str, str] = {}
        #: Primes the attach lock for the next move (``Sandbox.prepare``), once ``open``.
        self.primer = AttachPrimer(None)

    @property
    def layers(self) -> list[str]:
        versions = set(self.enforcing.values())
        return [f"cgroup-{v}" for v in ("v2", "v1") if v in versions]

    def open(self) -> int:
        """Create the group folders, after removing stale ones of our family; how many
        processes those still held (and were killed)."""
        stale = 0
        for hierarchy, own in self.host.hierarchies.items():
            for folder in stale_groups(own, self.family):
                stale += reaper.kill_cgroup(str(folder))
                reaper.remove_cgroup(str(folder))
            folder = own / f"{GROUP_PREFIX}{self.group}"
            try:
                folder.mkdir(exist_ok=True)
            except OSError as exc:
                log.warning("sandbox: cannot create cgroup %s: %s", folder, exc)
                continue
            self.dirs[hierarchy] = folder
            if self.primer.procs is None or hierarchy != UNIFIED:
                # Ours, where this process is: a v1 one first (no rule against processes
                # in a cgroup that has children, as v2 has).
                self.primer = AttachPrimer(own / "cgroup.procs")
        for controller, (version, _) in self.host.controllers.items():
            hierarchy = UNIFIED if version == "v2" else controller
            if hierarchy not in self.dirs:
                continue
            if version == "v2" and not self._enable_v2(controller):
                continue
            self.enforcing[controller] = version
        if stale:
            log.warning(
                "sandbox: killed %d process(es) left behind by a previous bot on this state dir",
                stale,
            )
        return stale

    def _enable_v2(self, controller: str) -> bool:
        """Delegate ``controller`` down to the plugin leaves (own → group → leaf)."""
        group = self.dirs[UNIFIED]
        for folder in (group.parent, group):
            enabled = _read(folder / "cgroup.subtree_control").split()
            if controller in enabled:
                continue
            try:
                _write(folder / "cgroup.subtree_control", f"+{controller}")
            except OSError as exc:
                # EBUSY: our own cgroup holds processes (the bot) and is not the root, so
                # v2's "no internal processes" rule forbids delegating controllers from it.
                log.warning(
                    "sandbox: cannot enable the %s controller in %s: %s", controller, folder, exc
                )
                return False
        return True

    def leaf(self, name: str, limits: ResourceLimits | None) -> PluginCgroup:
        """Create a plugin leaf and write its limits (None: none yet, as for a standby's
        leaf, ``rosey.sandbox.standby``); controllers that fail are left out."""
        dirs: dict[str, Path] = {}
        for hierarchy, group in self.dirs.items():
            path = group / name
            try:
                path.mkdir(exist_ok=True)
            except OSError as exc:
                log.warning("sandbox: cannot create cgroup %s: %s", path, exc)
                continue
            dirs[hierarchy] = path
        cgroup = PluginCgroup(name, dirs)
        if limits is not None:
            self.limit(cgroup, limits)
        return cgroup

    def rename(self, cgroup: PluginCgroup, name: str, limits: ResourceLimits) -> PluginCgroup:
        """A standby's leaf, with the process in it, made a plugin's: renamed to ``name``
        (``rename(2)`` within the group: no move, so no wait for the attach lock) and its
        limits written. cgroup v2 has no rename (``EPERM``): there the leaf keeps its standby
        name (``standby-PID``, PID the plugin's); a v1 hierarchy that refuses does too (logged).
        """
        dirs: dict[str, Path] = {}
        for hierarchy, path in cgroup.dirs.items():
            if hierarchy == UNIFIED:
                dirs[hierarchy] = path
                continue
            try:
                os.rename(path, path.parent / name)
                dirs[hierarchy] = path.parent / name
            except OSError as exc:
                log.warning("sandbox: cannot rename cgroup %s to %s: %s", path, name, exc)
                dirs[hierarchy] = path
        renamed = PluginCgroup(name, dirs)
        self.limit(renamed, limits)
        return renamed

    def limit(self, cgroup: PluginCgroup, limits: ResourceLimits) -> None:
        """Write ``limits`` in ``cgroup``; the controllers that took them enforce them."""
        name, dirs = cgroup.name, cgroup.dirs
        for controller, version in self.enforcing.items():
            hierarchy = UNIFIED if version == "v2" else controller
            if hierarchy not in dirs:
                continue
            settings = (v2_settings if version == "v2" else v1_settings)(controller, limits)
            if _apply(dirs[hierarchy], settings, name):
                cgroup.enforcing[controller] = version

    def close(self) -> None:
        """Kill anything left in the group and remove its folders."""
        for folder in self.dirs.values():
            reaper.kill_cgroup(str(folder))
            reaper.remove_cgroup(str(folder))
        self.dirs.clear()


def _apply(folder: Path, settings: list[Setting], name: str) -> bool:
    """Write ``settings`` in order; False (logged) when a required one fails."""
    for setting in settings:
        path = folder / setting.file
        if not setting.required and not path.exists():
            continue
        try:
            _write(path, setting.value)
        except OSError as exc:
            if setting.required:
                log.warning("%s: cannot set %s to %s: %s", name, path, setting.value, exc)
                return False
    return True


def stale_groups(own: Path, family: str) -> list[Path]:
    """Group folders of ``family`` under ``own`` whose owning bot no longer runs."""
    found: list[Path] = []
    prefix = f"{GROUP_PREFIX}{family}-"
    try:
        candidates = [p for p in own.iterdir() if p.name.startswith(prefix) and p.is_dir()]
    except OSError:
        return []
    for folder in candidates:
        pid_text, _, rest = folder.name[len(prefix) :].partition("-")
        start_text = rest.partition("-")[0]
        if not (pid_text.isdigit() and start_text.isdigit()):
            continue
        if reaper.start_time(int(pid_text)) != int(start_text):
            found.append(folder)
    return found


def family_name(state_dir: Path) -> str:
    """The cgroup family of a bot's state dir: bots on the same state dir share it."""
    digest = hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()
    return digest[:12]
