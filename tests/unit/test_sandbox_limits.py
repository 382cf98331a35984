"""Manifest limits → cgroup files and rlimits; kernel counters and samples → reasons in words."""

from __future__ import annotations

import resource
from collections.abc import Callable

import pytest

from rosey.sandbox.limits import (
    MIB,
    LimitEvents,
    ResourceLimits,
    Setting,
    cpu_quota_us,
    limit_reason,
    manager_open_files,
    parse_counter,
    rlimit_values,
    v1_settings,
    v2_settings,
)
from rosey.sandbox.logs import IntakeBudget
from rosey.sandbox.stats import TreeSample, exceeded

LIMITS = ResourceLimits(memory_mb=64, cpu_percent=50, max_processes=8, open_files=100)


@pytest.mark.parametrize(
    ("controller", "expected"),
    [
        (
            "memory",
            [
                Setting("memory.limit_in_bytes", str(64 * MIB)),
                Setting("memory.memsw.limit_in_bytes", str(64 * MIB), required=False),
            ],
        ),
        ("cpu", [Setting("cpu.cfs_period_us", "250000"), Setting("cpu.cfs_quota_us", "125000")]),
        ("pids", [Setting("pids.max", "8")]),
    ],
)
def test_v1_settings(controller: str, expected: list[Setting]) -> None:
    assert v1_settings(controller, LIMITS) == expected


@pytest.mark.parametrize(
    ("controller", "expected"),
    [
        (
            "memory",
            [
                Setting("memory.max", str(64 * MIB)),
                Setting("memory.swap.max", "0", required=False),
                Setting("memory.oom.group", "1", required=False),
            ],
        ),
        ("cpu", [Setting("cpu.max", "125000 250000")]),
        ("pids", [Setting("pids.max", "8")]),
    ],
)
def test_v2_settings(controller: str, expected: list[Setting]) -> None:
    assert v2_settings(controller, LIMITS) == expected


@pytest.mark.parametrize("settings", [v1_settings, v2_settings])
def test_unknown_controller_is_an_error(
    settings: Callable[[str, ResourceLimits], list[Setting]],
) -> None:
    with pytest.raises(ValueError, match="freezer"):
        settings("freezer", LIMITS)


@pytest.mark.parametrize(
    ("percent", "quota"), [(1, 2500), (50, 125_000), (100, 250_000), (250, 625_000)]
)
def test_cpu_quota_spans_cores_and_never_goes_below_the_kernel_minimum(
    percent: int, quota: int
) -> None:
    assert cpu_quota_us(ResourceLimits(cpu_percent=percent)) == quota


def test_rlimits_with_a_memory_cgroup_leave_memory_to_it() -> None:
    assert rlimit_values(LIMITS, memory_by_cgroup=True) == {
        resource.RLIMIT_NOFILE: (100, 100),
        resource.RLIMIT_FSIZE: (100 * MIB, 100 * MIB),  # no file outgrows data_mb (100)
        resource.RLIMIT_CORE: (0, 0),
    }


@pytest.mark.parametrize(("data_mb", "file_size_mb", "cap_mb"), [(8, 1024, 8), (4096, 1024, 1024)])
def test_the_file_size_rlimit_is_the_smaller_of_data_quota_and_file_cap(
    data_mb: int, file_size_mb: int, cap_mb: int
) -> None:
    limits = ResourceLimits(data_mb=data_mb, file_size_mb=file_size_mb)
    values = rlimit_values(limits, memory_by_cgroup=True)
    assert values[resource.RLIMIT_FSIZE] == (cap_mb * MIB, cap_mb * MIB)


def test_rlimits_without_a_memory_cgroup_cap_the_data_segment() -> None:
    values = rlimit_values(LIMITS, memory_by_cgroup=False)
    assert values[resource.RLIMIT_DATA] == (64 * MIB, 64 * MIB)
    assert resource.RLIMIT_NPROC not in values  # per uid, and ignored for root


@pytest.mark.parametrize(
    ("events", "memory_error", "reason"),
    [
        (LimitEvents(), False, None),
        (
            LimitEvents(oom_kills=1),
            False,
            "memory limit 64 MB hit: the kernel's OOM killer ended it",
        ),
        (LimitEvents(), True, "memory limit 64 MB hit: an allocation failed"),
        (LimitEvents(forks_refused=1), False, "process limit 8 hit: 1 fork refused"),
        (
            LimitEvents(oom_kills=2, forks_refused=43),
            True,
            "memory limit 64 MB hit: the kernel's OOM killer ended it; "
            "process limit 8 hit: 43 forks refused",
        ),
        (
            LimitEvents(data_used_mb=130),
            False,
            "data folder over its quota of 100 MB (130 MB found)",
        ),
    ],
)
def test_limit_reason(events: LimitEvents, memory_error: bool, reason: str | None) -> None:
    assert limit_reason(LIMITS, events, memory_error=memory_error) == reason


@pytest.mark.parametrize(
    ("text", "key", "value"),
    [
        ("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n", "oom_kill", 3),
        ("max 12\n", "max", 12),
        ("low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\n", "max", 5),
        ("", "max", 0),
        ("max lots\n", "max", 0),
    ],
)
def test_parse_counter(text: str, key: str, value: int) -> None:
    assert parse_counter(text, key) == value


def _sample(**changes: float) -> TreeSample:
    values: dict[str, float] = {
        "processes": 1,
        "threads": 1,
        "cpu_percent": 10.0,
        "rss_mb": 30.0,
        "open_files": 10,
    }
    values.update(changes)
    return TreeSample(
        pid=1,
        processes=int(values["processes"]),
        threads=int(values["threads"]),
        cpu_percent=values["cpu_percent"],
        rss_mb=values["rss_mb"],
        open_files=int(values["open_files"]),
    )


@pytest.mark.parametrize(
    ("sample", "over"),
    [
        (_sample(), []),
        (_sample(rss_mb=64.0, processes=8, open_files=100, cpu_percent=60.0), []),
        (_sample(rss_mb=64.5), ["memory limit 64 MB exceeded (64.5 MB resident)"]),
        (_sample(processes=9), ["process limit 8 exceeded (9 processes)"]),
        (_sample(open_files=101), ["open file limit 100 exceeded (101 open)"]),
        (_sample(cpu_percent=60.1), ["cpu limit 50% exceeded (60.1%)"]),
    ],
)
def test_exceeded(sample: TreeSample, over: list[str]) -> None:
    assert exceeded(sample, LIMITS) == over


@pytest.mark.parametrize(
    ("writes", "pauses"),
    [
        # (bytes, at second) → the pause asked for after each; rate 10/s, burst 20.
        ([(10, 0.0), (10, 0.0)], [0.0, 0.0]),  # within the burst
        ([(10, 0.0), (10, 0.0), (10, 0.0)], [0.0, 0.0, 1.0]),  # 10 over: 1 s at 10/s
        ([(30, 0.0), (0, 1.0)], [1.0, 0.0]),  # drained by the time it reads again
        ([(30, 0.0), (30, 0.5)], [1.0, 3.5]),  # 60 - 5 drained - 20 burst = 35 over
    ],
)
def test_intake_budget_holds_output_back_past_its_rate(
    writes: list[tuple[int, float]], pauses: list[float]
) -> None:
    budget = IntakeBudget(rate=10, burst=20)
    assert [budget.spend(size, at) for size, at in writes] == pytest.approx(pauses)


@pytest.mark.parametrize(
    ("soft", "hard", "wanted"),
    [
        (1024, 524288, 65536),  # systemd's default pair: raised to what the manager wants
        (1024, 4096, 4096),  # a tight hard limit: up to it
        (1024, resource.RLIM_INFINITY, 65536),
        (65536, 524288, None),  # already there
        (100000, 524288, None),  # never lowered
        (4096, 4096, None),  # nothing to gain
    ],
)
def test_the_manager_raises_its_open_files_within_the_hard_limit(
    soft: int, hard: int, wanted: int | None
) -> None:
    assert manager_open_files(soft, hard) == wanted
