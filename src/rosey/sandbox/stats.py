"""Sampling a plugin's whole process tree: the last line behind the kernel limits.

``TreeSampler.sample()`` sums over the plugin process and every process it started (its
cgroup's members when it has one, so children that left its session count too): CPU percent
(of one core, since the previous sample), resident memory, threads, open file descriptors and
the process count. ``exceeded(sample, limits)`` is pure: it names the limits a sample is over,
for hosts where no cgroup enforces them (the manager decides what to do, e.g. kill after N
samples in a row).

Where the plugin has a cgroup whose counters cover the tree (``CgroupCounters``: CPU time from
``cpu.stat`` / ``cpuacct.usage``, memory from ``memory.stat``, tasks from ``pids.current``) a
sample reads those few files instead of walking ``/proc`` with psutil for every process (a
tenth of the CPU: the manager samples every plugin every ``health.interval_s``). Memory is then
what the cgroup is charged for (anonymous and mapped file pages it faulted in), the figure its
kernel limit holds it to; pages a forked plugin shares with the fork server are charged there.
Open files are then counted in ``/proc/PID/fd`` only where no ``RLIMIT_NOFILE`` holds each
process already (``count_files``). The counter files stay open between samples and are read
with ``pread`` (``CounterFiles``): opening a cgroup file costs the kernel a path walk, several
times the read itself (sampling was half of an idle manager's CPU). ``TreeSampler.close()``
lets them go; past a budget of descriptors (an eighth of ``RLIMIT_NOFILE``), a file is opened
for each read.
Without a cgroup, or when a counter is missing, psutil walks the tree as before (and only then
is psutil imported).
"""

from __future__ import annotations

import errno
import os
import resource
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from rosey.sandbox.limits import MIB, ResourceLimits

if TYPE_CHECKING:
    import psutil

__all__ = [
    "CPU_TOLERANCE",
    "CgroupCounters",
    "CounterFiles",
    "TreeSample",
    "TreeSampler",
    "exceeded",
    "parse_cpu_usage",
    "parse_memory",
]

#: CPU percent above ``cpu_percent`` tolerated before a sample counts as over (jitter).
CPU_TOLERANCE = 10.0

#: ``memory.stat`` keys summed as "resident" (v1 with its hierarchical totals, v2).
_MEMORY_KEYS = {
    "v1": ("total_rss", "total_mapped_file"),
    "v2": ("anon", "file_mapped"),
}


@dataclass(frozen=True)
class TreeSample:
    """One plugin's tree at one moment."""

    pid: int
    processes: int
    threads: int
    cpu_percent: float
    rss_mb: float
    open_files: int


@dataclass(frozen=True)
class CgroupCounters:
    """The files of one plugin cgroup that count its whole tree (``PluginCgroup.counters``).

    ``cpu``: ``cpu.stat`` (v2, also on a hybrid host's unified leaf: ``usage_usec``) or
    ``cpuacct.usage`` (v1, nanoseconds); ``memory``: ``memory.stat`` with its version;
    ``tasks``: ``pids.current`` (threads of every process in it).
    """

    cpu: Path
    memory: Path
    memory_version: str
    tasks: Path
    #: ``cgroup.procs`` of the leaf: its processes (a plugin cannot make cgroups below it).
    procs: Path | None = None


def parse_cpu_usage(name: str, text: str) -> float | None:
    """Seconds of CPU from ``cpu.stat`` (``usage_usec``) or ``cpuacct.usage`` (ns)."""
    if name == "cpuacct.usage":
        value = text.strip()
        return int(value) / 1e9 if value.isdigit() else None
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "usage_usec" and value.strip().isdigit():
            return int(value) / 1e6
    return None


def cpu_seconds(counters: CgroupCounters) -> float | None:
    """CPU seconds the cgroup has used so far (its whole tree, exited members included)."""
    text = _read(counters.cpu)
    return None if text is None else parse_cpu_usage(counters.cpu.name, text)


def parse_memory(version: str, text: str) -> int | None:
    """Resident bytes from ``memory.stat`` (see ``_MEMORY_KEYS``); None if none is there.

    Keys are found by position, not by splitting every line (v1's file has some seventy)."""
    total: int | None = None
    text = "\n" + text
    for key in _MEMORY_KEYS.get(version, ()):
        at = text.find(f"\n{key} ")
        if at < 0:
            continue
        start = at + len(key) + 2
        end = text.find("\n", start)
        value = text[start:] if end < 0 else text[start:end]
        if value.strip().isdigit():
            total = (total or 0) + int(value)
    return total


def _read(path: Path) -> str | None:
    """A small kernel file in three system calls (``open()`` adds four more: fstat, ioctl...)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return os.read(fd, 65536).decode("ascii", "replace")
    except OSError:
        return None
    finally:
        os.close(fd)


class CounterFiles:
    """Small kernel files kept open and read from their start (``pread``) at every sample.

    The files kept open by all samplers together stay under an eighth of the process's soft
    ``RLIMIT_NOFILE`` (``budget()``: 8192 of the 65536 the bot raises it to; 128 of a plain
    1024), so that a manager with many plugins keeps its descriptors for spawning (each
    running plugin holds about five of its own); a file over the budget, or after
    ``close()``, is read the old way: open, read, close. A file that cannot be opened now is
    tried again at the next read. A failed read closes the file (a removed cgroup's files
    fail with ``ENODEV``).
    """

    __slots__ = ("_fds",)

    #: Files kept open by every ``CounterFiles`` of this process, and the most it may keep.
    kept_total: ClassVar[int] = 0
    _budget: ClassVar[int | None] = None

    def __init__(self) -> None:
        self._fds: dict[Path, int] | None = {}

    @classmethod
    def budget(cls) -> int:
        """How many files all samplers may keep open (an eighth of the soft NOFILE limit)."""
        if cls._budget is None:
            soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
            cls._budget = 1024 if soft == resource.RLIM_INFINITY else max(0, soft // 8)
        return cls._budget

    @property
    def kept(self) -> int:
        """How many files are open now."""
        return len(self._fds or ())

    def read(self, path: Path) -> str | None:
        """The text of ``path`` now; None when it cannot be read."""
        fds = self._fds
        fd = None if fds is None else fds.get(path)
        if fd is None:
            if fds is None or CounterFiles.kept_total >= self.budget():
                return _read(path)
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as exc:
                return _read(path) if exc.errno in (errno.EMFILE, errno.ENFILE) else None
            fds[path] = fd
            CounterFiles.kept_total += 1
        try:
            return os.pread(fd, 65536, 0).decode("ascii", "replace")
        except OSError:
            self._drop(path)
            return None

    def _drop(self, path: Path) -> None:
        fd = self._fds.pop(path) if self._fds else None
        if fd is not None:
            CounterFiles.kept_total -= 1
            os.close(fd)

    def close(self) -> None:
        """Close every kept file; from now on each read opens and closes its file."""
        for path in list(self._fds or ()):
            self._drop(path)
        self._fds = None


def _open_files(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


class TreeSampler:
    """Samples one plugin's tree; keeps psutil handles (or the last CPU counter) between
    samples for CPU deltas."""

    def __init__(
        self,
        pid: int,
        members: Callable[[], Iterable[int] | None] | None = None,
        counters: CgroupCounters | None = None,
        *,
        count_files: bool = True,
    ) -> None:
        """``count_files`` False: with counters, skip counting open files (``open_files`` is
        0) because ``RLIMIT_NOFILE`` already holds each process to the limit."""
        self.pid = pid
        self._members = members
        self._counters = counters
        self._count_files = count_files
        self._handles: dict[int, psutil.Process] = {}
        self._cpu_before: tuple[float, float] | None = None  # (monotonic, CPU seconds)
        self._files = CounterFiles()

    def close(self) -> None:
        """Close the counter files kept open (a later sample reads them without keeping)."""
        self._files.close()

    def _pids(self) -> set[int]:
        found = self._members() if self._members is not None else None
        if found is not None:
            return set(found) | {self.pid}
        import psutil  # only without a cgroup: not in an idle manager's memory

        try:
            root = psutil.Process(self.pid)
            return {self.pid} | {p.pid for p in root.children(recursive=True)}
        except psutil.Error:
            return set()

    def known(self) -> dict[int, psutil.Process]:
        """The processes the last sample saw (pid → handle), for killing a tree without cgroup."""
        return dict(self._handles)

    def sample(self) -> TreeSample | None:
        """The tree now; None once the plugin process is gone."""
        counters = self._counters
        listed = self._files.read(counters.procs) if counters and counters.procs else None
        pids = {int(line) for line in listed.split()} if listed is not None else self._pids()
        if self.pid not in pids:
            return None
        if counters is not None:
            counted = self._from_counters(counters, pids)
            if counted is not None:
                return counted
        return self._from_proc(pids)

    def _from_counters(self, counters: CgroupCounters, pids: set[int]) -> TreeSample | None:
        """A few cgroup files instead of psutil; None when one cannot be read (fall back)."""
        cpu_text = self._files.read(counters.cpu)
        memory_text = self._files.read(counters.memory)
        tasks_text = self._files.read(counters.tasks)
        if cpu_text is None or memory_text is None or tasks_text is None:
            return None
        cpu_s = parse_cpu_usage(counters.cpu.name, cpu_text)
        memory = parse_memory(counters.memory_version, memory_text)
        if cpu_s is None or memory is None or not tasks_text.strip().isdigit():
            return None
        now = time.monotonic()
        cpu = 0.0
        if self._cpu_before is not None and now > self._cpu_before[0]:
            cpu = 100.0 * (cpu_s - self._cpu_before[1]) / (now - self._cpu_before[0])
        self._cpu_before = (now, cpu_s)
        return TreeSample(
            pid=self.pid,
            processes=len(pids),
            threads=int(tasks_text),
            cpu_percent=round(max(0.0, cpu), 1),
            rss_mb=round(memory / MIB, 1),
            open_files=sum(_open_files(pid) for pid in pids) if self._count_files else 0,
        )

    def _from_proc(self, pids: set[int]) -> TreeSample | None:
        import psutil  # see _pids

        for gone in set(self._handles) - pids:
            del self._handles[gone]
        processes = threads = fds = 0
        cpu = rss = 0.0
        for pid in sorted(pids):
            handle = self._handles.get(pid)
            try:
                if handle is None:
                    handle = self._handles[pid] = psutil.Process(pid)
                    handle.cpu_percent(None)  # the first call only starts the measurement
                with handle.oneshot():
                    if handle.status() == psutil.STATUS_ZOMBIE:
                        continue
                    cpu += handle.cpu_percent(None)
                    rss += handle.memory_info().rss
                    threads += handle.num_threads()
                    fds += handle.num_fds()
                processes += 1
            except psutil.Error:
                self._handles.pop(pid, None)
        if processes == 0:
            return None
        return TreeSample(
            pid=self.pid,
            processes=processes,
            threads=threads,
            cpu_percent=round(cpu, 1),
            rss_mb=round(rss / MIB, 1),
            open_files=fds,
        )


def exceeded(sample: TreeSample, limits: ResourceLimits) -> list[str]:
    """The limits ``sample`` is over, in words (empty when within all of them)."""
    over: list[str] = []
    if sample.rss_mb > limits.memory_mb:
        over.append(f"memory limit {limits.memory_mb} MB exceeded ({sample.rss_mb:g} MB resident)")
    if sample.processes > limits.max_processes:
        over.append(f"process limit {limits.max_processes} exceeded ({sample.processes} processes)")
    if sample.open_files > limits.open_files:
        over.append(f"open file limit {limits.open_files} exceeded ({sample.open_files} open)")
    if sample.cpu_percent > limits.cpu_percent + CPU_TOLERANCE:
        over.append(f"cpu limit {limits.cpu_percent}% exceeded ({sample.cpu_percent:g}%)")
    return over
