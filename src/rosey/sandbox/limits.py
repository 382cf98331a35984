"""Manifest limits → the values each enforcement layer takes (pure, no I/O).

``ResourceLimits`` is what the manifest asks for. The functions here turn it into cgroup v1
interface files, cgroup v2 interface files and rlimits, and turn what the kernel reports back
(OOM kills, refused forks) into a reason in words for ``last_error``.

Notes on meaning:

- ``memory_mb`` is resident memory (RSS + page cache) under cgroups; swap is capped to the same
  total where the host accounts it. Under rlimits alone it is ``RLIMIT_DATA`` (writable private
  mappings: heap, anonymous mmap, thread stacks), which a Python plugin hits as ``MemoryError``.
- ``cpu_percent`` is a CFS quota: 50 means half of one core per 250 ms period; above 100 spans
  cores. The period is longer than the kernel's 100 ms default on purpose: a plugin's start
  (interpreter and imports, ~90 ms of CPU) then fits into its first period's quota instead of
  being throttled into several, while the long-run share is the same. Rlimits cannot express
  a rate, so without a cpu cgroup it is only sampled.
- ``max_processes`` is ``pids.max``, which counts *tasks*: threads count too. ``RLIMIT_NPROC``
  is per user (and ignored for root), so it is never used.
- ``open_files`` is ``RLIMIT_NOFILE``, per process.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass

MIB = 1024 * 1024
#: The manager's own soft ``RLIMIT_NOFILE`` is raised to at least this, within the hard limit:
#: each supervised plugin holds about 9 descriptors in the bot (control socket, log pipes,
#: pidfd, kept cgroup counter files), so the common soft default of 1024 would cap a bot at
#: ~100 plugins. Plugins get their own ``open_files`` limit; nothing here uses ``select``.
MANAGER_OPEN_FILES = 65536
#: CFS period used for ``cpu_percent`` (see the module notes for why not the 100 ms default).
CPU_PERIOD_US = 250_000


@dataclass(frozen=True)
class ResourceLimits:
    """What the kernel should hold a plugin to (manifest ``limits``, plus fixed safety caps)."""

    memory_mb: int = 256
    cpu_percent: int = 50
    max_processes: int = 32
    open_files: int = 256
    #: Quota of the plugin's data folder in MB (manifest ``limits.data_mb``, within limits_max).
    data_mb: int = 100
    #: Largest file the plugin may write (``RLIMIT_FSIZE``); not in the manifest.
    file_size_mb: int = 1024


@dataclass(frozen=True)
class Setting:
    """One value to write into one cgroup interface file."""

    file: str
    value: str
    #: False for files some kernels lack (swap accounting, ``memory.oom.group``).
    required: bool = True


def cpu_quota_us(limits: ResourceLimits) -> int:
    """The CFS quota per ``CPU_PERIOD_US`` for ``cpu_percent`` (at least the kernel's 1 ms)."""
    return max(1000, limits.cpu_percent * CPU_PERIOD_US // 100)


def v1_settings(controller: str, limits: ResourceLimits) -> list[Setting]:
    """The cgroup v1 files for ``controller``, in the order they must be written."""
    if controller == "memory":
        memory = str(limits.memory_mb * MIB)
        # memsw (memory + swap) must be written after memory and be >= it: equal means no swap.
        return [
            Setting("memory.limit_in_bytes", memory),
            Setting("memory.memsw.limit_in_bytes", memory, required=False),
        ]
    if controller == "cpu":
        return [
            Setting("cpu.cfs_period_us", str(CPU_PERIOD_US)),
            Setting("cpu.cfs_quota_us", str(cpu_quota_us(limits))),
        ]
    if controller == "pids":
        return [Setting("pids.max", str(limits.max_processes))]
    raise ValueError(f"no cgroup v1 settings for controller {controller!r}")


def v2_settings(controller: str, limits: ResourceLimits) -> list[Setting]:
    """The cgroup v2 files for ``controller``."""
    if controller == "memory":
        return [
            Setting("memory.max", str(limits.memory_mb * MIB)),
            Setting("memory.swap.max", "0", required=False),
            # On OOM, kill the whole plugin cgroup rather than one arbitrary process in it.
            Setting("memory.oom.group", "1", required=False),
        ]
    if controller == "cpu":
        return [Setting("cpu.max", f"{cpu_quota_us(limits)} {CPU_PERIOD_US}")]
    if controller == "pids":
        return [Setting("pids.max", str(limits.max_processes))]
    raise ValueError(f"no cgroup v2 settings for controller {controller!r}")


def rlimit_values(limits: ResourceLimits, *, memory_by_cgroup: bool) -> dict[int, tuple[int, int]]:
    """``resource.RLIMIT_*`` → (soft, hard) for a plugin process.

    ``RLIMIT_DATA`` carries ``memory_mb`` only when no memory cgroup does: a cgroup counts
    what is resident, which is what the manifest means, while an rlimit counts reservations.
    """
    file_size = min(limits.file_size_mb, limits.data_mb) * MIB
    values = {
        resource.RLIMIT_NOFILE: (limits.open_files, limits.open_files),
        # No file may outgrow the data folder it must live in (the only place a plugin may
        # write): without a quota filesystem this is what holds a single big file.
        resource.RLIMIT_FSIZE: (file_size, file_size),
        resource.RLIMIT_CORE: (0, 0),
    }
    if not memory_by_cgroup:
        values[resource.RLIMIT_DATA] = (limits.memory_mb * MIB, limits.memory_mb * MIB)
    return values


@dataclass(frozen=True)
class LimitEvents:
    """What the kernel reported about a plugin cgroup (counters read at the end of its life)."""

    oom_kills: int = 0
    forks_refused: int = 0
    #: MB its data folder held when the quota watch found it over ``data_mb`` (0: never).
    data_used_mb: int = 0


def limit_reason(
    limits: ResourceLimits, events: LimitEvents, *, memory_error: bool = False
) -> str | None:
    """The limit a plugin hit, in words for ``last_error``; None when it hit none.

    ``memory_error``: its stderr shows a ``MemoryError`` while an rlimit held its memory.
    """
    reasons: list[str] = []
    if events.oom_kills:
        reasons.append(f"memory limit {limits.memory_mb} MB hit: the kernel's OOM killer ended it")
    elif memory_error:
        reasons.append(f"memory limit {limits.memory_mb} MB hit: an allocation failed")
    if events.forks_refused:
        plural = "s" if events.forks_refused != 1 else ""
        reasons.append(
            f"process limit {limits.max_processes} hit: {events.forks_refused} fork{plural} refused"
        )
    if events.data_used_mb:
        reasons.append(
            f"data folder over its quota of {limits.data_mb} MB ({events.data_used_mb} MB found)"
        )
    return "; ".join(reasons) or None


def parse_counter(text: str, key: str) -> int:
    """The value of ``key`` in a flat-keyed cgroup file (``memory.events``, ``pids.events``)."""
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            try:
                return int(value.strip())
            except ValueError:
                return 0
    return 0


def manager_open_files(soft: int, hard: int, want: int = MANAGER_OPEN_FILES) -> int | None:
    """The soft ``RLIMIT_NOFILE`` the manager should set, or None to leave ``soft`` as it is.

    Raised to ``want`` within ``hard`` (``RLIM_INFINITY`` is -1); never lowered.
    """
    ceiling = want if hard == resource.RLIM_INFINITY else min(want, hard)
    return ceiling if ceiling > soft else None
