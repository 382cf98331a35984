"""The data-folder quota's prepare of N cold plugins: system calls next to processes.

    .venv/bin/python bench/quota_prepare.py [--n 100] [--mb 100] [--workers 8] [--rounds 2]

As root with loop devices (``quota-loop``). Each round prepares N new plugins' data folders
(image created, loop device bound, mounted) from ``--workers`` threads, as a start-all does,
two ways, interleaved: ``processes`` (``mkfs.ext4`` and ``mount`` per plugin, as before issue
13's round 2) and ``syscalls`` (a copy of one template per size, ``LOOP_CONFIGURE`` and
``mount(2)``: the default). Then a restart of each (the mount reused), a second bot start (the
images exist: mounted again) and the unmount of all (``release_all``). Prints per plugin
median/p90 wall time of a prepare, the CPU time of the whole batch (this process and its
children: ``mkfs``/``mount`` run as children), and the ratio syscalls / processes.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from rosey.sandbox.quota import LOOP, DataQuota


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def batch(
    quota: DataQuota, names: list[str], root: Path, mb: int, workers: int
) -> tuple[list[float], float, float]:
    """Prepare every name at once; (per-plugin ms, batch wall s, batch CPU s)."""
    times: list[float] = []

    def one(name: str) -> None:
        started = time.perf_counter()
        layer = quota.prepare(name, root / "data" / name, mb)
        times.append((time.perf_counter() - started) * 1000)
        assert layer == LOOP, f"{name}: {layer}"

    return timed(lambda: list(ThreadPoolExecutor(workers).map(one, names)), times)


def timed(work: Callable[[], object], times: list[float]) -> tuple[list[float], float, float]:
    cpu, wall = cpu_seconds(), time.perf_counter()
    work()
    return times, time.perf_counter() - wall, cpu_seconds() - cpu


def run(direct: bool, n: int, mb: int, workers: int) -> dict[str, tuple[list[float], float, float]]:
    with tempfile.TemporaryDirectory(prefix="rosey-bench-quota-") as tmp:
        root = Path(tmp)
        names = [f"p{i:03d}" for i in range(n)]
        quota = DataQuota(root, direct=direct)
        quota.open()
        out = {"cold": batch(quota, names, root, mb, workers)}
        out["restart"] = batch(quota, names, root, mb, workers)
        out["unmount"] = timed(quota.release_all, [])
        again = DataQuota(root, direct=direct)
        again.open()
        out["next start"] = batch(again, names, root, mb, workers)
        again.release_all()
        return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--mb", type=int, default=100)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    if os.geteuid() != 0 or not os.path.exists("/dev/loop-control"):
        print("needs root and loop devices (quota-loop)", file=sys.stderr)
        return 2
    results: dict[str, dict[str, list[tuple[list[float], float, float]]]] = {}
    for _ in range(args.rounds):
        for label, direct in (("processes", False), ("syscalls", True)):
            for phase, figures in run(direct, args.n, args.mb, args.workers).items():
                results.setdefault(phase, {}).setdefault(label, []).append(figures)
    with open("/proc/loadavg") as fh:
        load = " ".join(fh.read().split()[:3])
    print(f"quota prepare, N={args.n}, {args.mb} MB each, {args.workers} threads, load {load}")
    print(f"{'phase':<11} {'way':<10} {'median ms':>9} {'p90 ms':>7} {'wall s':>7} {'CPU s':>6}")
    for phase, ways in results.items():
        cpu: dict[str, float] = {}
        for label, runs in ways.items():
            per = sorted(t for figures in runs for t in figures[0])
            walls = statistics.median(figures[1] for figures in runs)
            cpu[label] = statistics.median(figures[2] for figures in runs)
            med = f"{statistics.median(per):9.2f}" if per else f"{'—':>9}"
            p90 = f"{per[int(len(per) * 0.9)]:7.2f}" if per else f"{'—':>7}"
            print(f"{phase:<11} {label:<10} {med} {p90} {walls:7.3f} {cpu[label]:6.3f}")
        if cpu.get("processes"):
            ratio = cpu["syscalls"] / cpu["processes"]
            print(f"{'':<11} CPU syscalls / processes = {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
