"""Sampling a plugin's whole process tree with psutil: the last line behind the kernel limits.

``TreeSampler.sample()`` sums over the plugin process and every process it started (its
cgroup's members when it has one, so children that left its session count too): CPU percent
(of one core, since the previous sample), resident memory, threads, open file descriptors and
the process count. ``exceeded(sample, limits)`` is pure: it names the limits a sample is over,
for hosts where no cgroup enforces them (the manager decides what to do, e.g. kill after N
samples in a row).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import psutil

from rosey.sandbox.limits import MIB, ResourceLimits

#: CPU percent above ``cpu_percent`` tolerated before a sample counts as over (jitter).
CPU_TOLERANCE = 10.0


@dataclass(frozen=True)
class TreeSample:
    """One plugin's tree at one moment."""

    pid: int
    processes: int
    threads: int
    cpu_percent: float
    rss_mb: float
    open_files: int


class TreeSampler:
    """Samples one plugin's tree; keeps psutil handles between samples for CPU deltas."""

    def __init__(self, pid: int, members: Callable[[], Iterable[int] | None] | None = None) -> None:
        self.pid = pid
        self._members = members
        self._handles: dict[int, psutil.Process] = {}

    def _pids(self) -> set[int]:
        found = self._members() if self._members is not None else None
        if found is not None:
            return set(found) | {self.pid}
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
        pids = self._pids()
        if self.pid not in pids:
            return None
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
