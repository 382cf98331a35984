"""Reading a plugin cgroup's counters (``rosey.sandbox.stats``): pure parsers and the sampler."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rosey.sandbox.stats import CgroupCounters, TreeSampler, parse_cpu_usage, parse_memory

V2_CPU = "usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\n"
V1_MEMORY = (
    "cache 4096\nrss 1048576\nmapped_file 8192\ntotal_rss 2097152\ntotal_mapped_file 1048576\n"
)
V2_MEMORY = "anon 3145728\nfile 999999\nfile_mapped 1048576\nshmem 0\n"


@pytest.mark.parametrize(
    ("name", "text", "seconds"),
    [
        ("cpu.stat", V2_CPU, 1.5),
        ("cpu.stat", "user_usec 1\n", None),
        ("cpuacct.usage", "2500000000\n", 2.5),
        ("cpuacct.usage", "garbage\n", None),
        ("cpu.stat", "", None),
    ],
)
def test_cpu_usage(name: str, text: str, seconds: float | None) -> None:
    assert parse_cpu_usage(name, text) == seconds


@pytest.mark.parametrize(
    ("version", "text", "resident"),
    [
        ("v1", V1_MEMORY, 3 * 2**20),  # hierarchical totals: anonymous + mapped file pages
        ("v2", V2_MEMORY, 4 * 2**20),  # page cache ("file") is not resident use
        ("v2", "file 5\n", None),
        ("v1", "total_rss_huge 5\ntotal_rss 7", 7),  # a longer key is not the key; no last \n
        ("v3", V2_MEMORY, None),
    ],
)
def test_memory(version: str, text: str, resident: int | None) -> None:
    assert parse_memory(version, text) == resident


def counters(tmp_path: Path, usage_usec: int, tasks: str = "3\n") -> CgroupCounters:
    (tmp_path / "cpu.stat").write_text(f"usage_usec {usage_usec}\n")
    (tmp_path / "memory.stat").write_text(V2_MEMORY)
    (tmp_path / "pids.current").write_text(tasks)
    return CgroupCounters(
        cpu=tmp_path / "cpu.stat",
        memory=tmp_path / "memory.stat",
        memory_version="v2",
        tasks=tmp_path / "pids.current",
    )


def test_the_sampler_reads_the_counters_and_takes_cpu_from_their_difference(
    tmp_path: Path,
) -> None:
    pid = 1  # always there: the counters, not the process, are what is read
    sampler = TreeSampler(pid, lambda: {pid}, counters(tmp_path, 0))
    first = sampler.sample()
    assert first is not None
    assert (first.cpu_percent, first.rss_mb, first.threads, first.processes) == (0.0, 4.0, 3, 1)
    counters(tmp_path, 10_000_000)  # ten seconds of CPU later: far over one core
    second = sampler.sample()
    assert second is not None
    assert second.cpu_percent > 100


def test_an_unreadable_counter_falls_back_to_walking_proc(tmp_path: Path) -> None:
    pid = os.getpid()
    sampler = TreeSampler(pid, lambda: {pid}, counters(tmp_path, 0, tasks="max\n"))
    sample = sampler.sample()
    assert sample is not None
    assert sample.threads >= 1
    assert sample.rss_mb > 4.0  # this test process, from /proc, not the 4 MB the file says


def test_the_processes_come_from_the_cgroup_list_when_there_is_one(tmp_path: Path) -> None:
    (tmp_path / "cgroup.procs").write_text("1\n4242\n")
    listed = counters(tmp_path, 0)
    with_procs = CgroupCounters(
        listed.cpu, listed.memory, listed.memory_version, listed.tasks, tmp_path / "cgroup.procs"
    )
    sample = TreeSampler(1, lambda: {1}, with_procs).sample()
    assert sample is not None
    assert sample.processes == 2
    assert TreeSampler(77, lambda: {77}, with_procs).sample() is None  # not listed: gone
