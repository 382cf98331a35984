"""The sampler keeps its cgroup counter files open (``rosey.sandbox.stats.CounterFiles``).

Opening a cgroup file costs more than reading it, and the manager samples every plugin every
``health.interval_s``: the files stay open and are read again from their start. These tests
use plain files standing in for the counters (a rewritten file is what a counter changing is).
"""

from __future__ import annotations

import os
import resource
from collections.abc import Iterator
from pathlib import Path

import pytest

from rosey.sandbox.stats import CgroupCounters, CounterFiles, TreeSampler

V2_MEMORY = "anon 3145728\nfile 999999\nfile_mapped 1048576\nshmem 0\n"


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def counters(folder: Path, usage_usec: int, tasks: str = "3\n") -> CgroupCounters:
    (folder / "cpu.stat").write_text(f"usage_usec {usage_usec}\n")
    (folder / "memory.stat").write_text(V2_MEMORY)
    (folder / "pids.current").write_text(tasks)
    (folder / "cgroup.procs").write_text("1\n")
    return CgroupCounters(
        cpu=folder / "cpu.stat",
        memory=folder / "memory.stat",
        memory_version="v2",
        tasks=folder / "pids.current",
        procs=folder / "cgroup.procs",
    )


@pytest.fixture
def budget() -> Iterator[None]:
    """Each test starts with no kept files counted and the real budget."""
    saved = CounterFiles.kept_total, CounterFiles._budget
    CounterFiles.kept_total, CounterFiles._budget = 0, None
    yield
    CounterFiles.kept_total, CounterFiles._budget = saved


@pytest.mark.usefixtures("budget")
def test_the_files_stay_open_and_each_sample_reads_them_again(tmp_path: Path) -> None:
    before = open_fds()
    sampler = TreeSampler(1, lambda: {1}, counters(tmp_path, 0))
    first = sampler.sample()
    assert first is not None
    assert first.threads == 3
    assert open_fds() == before + 4  # cgroup.procs, cpu.stat, memory.stat, pids.current
    assert CounterFiles.kept_total == 4
    counters(tmp_path, 20_000_000, tasks="7\n")  # rewritten in place: the kept files see it
    second = sampler.sample()
    assert second is not None
    assert (second.threads, second.cpu_percent > 100) == (7, True)
    assert open_fds() == before + 4  # the same four, not four more
    sampler.close()
    assert (open_fds(), CounterFiles.kept_total) == (before, 0)


@pytest.mark.usefixtures("budget")
def test_after_close_a_sample_reads_without_keeping_anything(tmp_path: Path) -> None:
    before = open_fds()
    sampler = TreeSampler(1, lambda: {1}, counters(tmp_path, 0))
    sampler.sample()
    sampler.close()
    sample = sampler.sample()
    assert sample is not None
    assert sample.threads == 3
    assert (open_fds(), CounterFiles.kept_total) == (before, 0)


@pytest.mark.usefixtures("budget")
def test_over_the_budget_files_are_opened_for_each_read(tmp_path: Path) -> None:
    CounterFiles._budget = 2  # as if the soft NOFILE limit were 16
    before = open_fds()
    sampler = TreeSampler(1, lambda: {1}, counters(tmp_path, 0))
    sample = sampler.sample()
    assert sample is not None
    assert (sample.threads, sample.rss_mb) == (3, 4.0)
    assert (open_fds(), CounterFiles.kept_total) == (before + 2, 2)
    sampler.close()
    assert open_fds() == before


@pytest.mark.usefixtures("budget")
def test_the_budget_is_an_eighth_of_the_soft_nofile_limit() -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    expected = 1024 if soft == resource.RLIM_INFINITY else soft // 8
    assert CounterFiles.budget() == expected


@pytest.mark.usefixtures("budget")
def test_a_file_that_goes_away_is_not_read_and_not_kept(tmp_path: Path) -> None:
    files = CounterFiles()
    assert files.read(tmp_path / "missing") is None
    assert files.kept == 0
    (tmp_path / "pids.current").write_text("5\n")
    assert files.read(tmp_path / "pids.current") == "5\n"
    assert files.kept == 1
    files.close()
    assert files.kept == 0
