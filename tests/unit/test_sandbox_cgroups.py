"""Plugin cgroups on a fake cgroup tree in ``tmp_path``: names, limit files, counters, staleness."""

from __future__ import annotations

import os
from pathlib import Path

from rosey.sandbox.cgroups import GROUP_PREFIX, CgroupGroup, family_name, stale_groups
from rosey.sandbox.host import CgroupHost
from rosey.sandbox.limits import MIB, LimitEvents, ResourceLimits
from rosey.sandbox.reaper import start_time


def _fake_v1_host(root: Path) -> CgroupHost:
    controllers: dict[str, tuple[str, Path]] = {}
    for name in ("memory", "cpu", "pids"):
        own = root / name / "own"
        own.mkdir(parents=True)
        (own / "cgroup.procs").write_text("")
        controllers[name] = ("v1", own)
    return CgroupHost(controllers=controllers)


def test_group_is_named_after_the_family_and_its_owner(tmp_path: Path) -> None:
    host = _fake_v1_host(tmp_path)
    group = CgroupGroup(host, "fam")
    assert group.open() == 0
    owner = f"{GROUP_PREFIX}fam-{os.getpid()}-{start_time(os.getpid())}-"
    names = {p.name for p in group.dirs.values()}
    assert len(names) == 1
    assert names.pop().startswith(owner)
    assert set(group.dirs) == {"memory", "cpu", "pids"}
    other = CgroupGroup(group.host, "fam")
    other.open()
    assert other.dirs["pids"] != group.dirs["pids"]  # a second sandbox of the same process
    assert group.enforcing == {"memory": "v1", "cpu": "v1", "pids": "v1"}
    assert group.layers == ["cgroup-v1"]


def test_leaf_writes_the_limits_and_skips_optional_files_the_kernel_lacks(tmp_path: Path) -> None:
    group = CgroupGroup(_fake_v1_host(tmp_path), "fam")
    group.open()
    leaf = group.leaf("dice-42", ResourceLimits(memory_mb=64, cpu_percent=25, max_processes=8))
    assert leaf.layers == ["cgroup-v1"]
    assert (leaf.dirs["memory"] / "memory.limit_in_bytes").read_text() == str(64 * MIB)
    assert not (leaf.dirs["memory"] / "memory.memsw.limit_in_bytes").exists()
    assert (leaf.dirs["cpu"] / "cpu.cfs_quota_us").read_text() == "62500"
    assert (leaf.dirs["cpu"] / "cpu.cfs_period_us").read_text() == "250000"
    assert (leaf.dirs["pids"] / "pids.max").read_text() == "8"
    assert leaf.kill_dir == leaf.dirs["pids"]


def test_leaf_reads_oom_kills_and_refused_forks(tmp_path: Path) -> None:
    group = CgroupGroup(_fake_v1_host(tmp_path), "fam")
    group.open()
    leaf = group.leaf("hog-7", ResourceLimits())
    assert leaf.events() == LimitEvents()
    (leaf.dirs["memory"] / "memory.oom_control").write_text(
        "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n"
    )
    (leaf.dirs["pids"] / "pids.events").write_text("max 4\n")
    assert leaf.events() == LimitEvents(oom_kills=1, forks_refused=4)


def test_stale_groups_are_those_of_our_family_whose_owner_is_not_running(tmp_path: Path) -> None:
    me = os.getpid()
    names = {
        "alive": f"{GROUP_PREFIX}fam-{me}-{start_time(me)}-1",
        "reused pid": f"{GROUP_PREFIX}fam-{me}-1-1",
        "dead": f"{GROUP_PREFIX}fam-999999999-5-3",
        "dead, no sequence": f"{GROUP_PREFIX}fam-999999999-5",
        "other family": f"{GROUP_PREFIX}other-999999999-5",
        "malformed": f"{GROUP_PREFIX}fam-x-y",
    }
    for name in names.values():
        (tmp_path / name).mkdir()
    found = {p.name for p in stale_groups(tmp_path, "fam")}
    assert found == {names["reused pid"], names["dead"], names["dead, no sequence"]}


def test_family_name_is_stable_per_state_dir(tmp_path: Path) -> None:
    assert family_name(tmp_path / "a") == family_name(tmp_path / "b" / ".." / "a")
    assert family_name(tmp_path / "a") != family_name(tmp_path / "b")
    assert len(family_name(tmp_path)) == 12


def _fake_v2_host(root: Path, offered: str) -> CgroupHost:
    own = root / "unified" / "bot.service"
    own.mkdir(parents=True)
    (own / "cgroup.procs").write_text("")
    (own / "cgroup.controllers").write_text(offered)
    (own / "cgroup.subtree_control").write_text("")
    controllers = {name: ("v2", own) for name in offered.split()}
    return CgroupHost(controllers=controllers, unified=own)


def test_v2_group_delegates_controllers_and_the_leaf_writes_v2_files(tmp_path: Path) -> None:
    group = CgroupGroup(_fake_v2_host(tmp_path, "memory cpu pids"), "fam")
    group.open()
    assert group.enforcing == {"memory": "v2", "cpu": "v2", "pids": "v2"}
    assert group.layers == ["cgroup-v2"]
    # Each controller was written to our own cgroup's and to the group's subtree_control.
    assert (group.dirs["unified"] / "cgroup.subtree_control").read_text() == "+pids"
    leaf = group.leaf("dice-42", ResourceLimits(memory_mb=64, cpu_percent=50, max_processes=8))
    assert set(leaf.dirs) == {"unified"}
    assert (leaf.dirs["unified"] / "memory.max").read_text() == str(64 * MIB)
    assert (leaf.dirs["unified"] / "cpu.max").read_text() == "125000 250000"
    assert (leaf.dirs["unified"] / "pids.max").read_text() == "8"
    assert not (leaf.dirs["unified"] / "memory.swap.max").exists()  # optional, absent here
    assert leaf.kill_dir == leaf.dirs["unified"]
    (leaf.dirs["unified"] / "memory.events").write_text("low 0\nmax 9\noom 1\noom_kill 1\n")
    assert leaf.events() == LimitEvents(oom_kills=1)


def test_v2_controller_that_cannot_be_delegated_is_left_out(tmp_path: Path) -> None:
    host = _fake_v2_host(tmp_path, "memory pids")
    own = host.unified
    assert own is not None
    (own / "cgroup.subtree_control").unlink()
    (own / "cgroup.subtree_control").mkdir()  # any write fails, like EBUSY on a busy cgroup
    group = CgroupGroup(host, "fam")
    group.open()
    assert group.enforcing == {}
    assert group.layers == []
    assert "unified" in group.dirs  # still there for cgroup.kill and membership
