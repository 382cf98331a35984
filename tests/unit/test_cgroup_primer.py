"""``AttachPrimer``: a move of nothing that takes the kernel's cgroup attach lock ahead of a
plugin's move (``Sandbox.prepare`` primes, ``Sandbox.confine`` moves): it writes this process
into a cgroup it is in already, one write at a time, and never fails a spawn."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rosey.sandbox.cgroups import AttachPrimer, CgroupGroup
from rosey.sandbox.host import CgroupHost, detect_host


def _fake_host(root: Path, unified: bool) -> CgroupHost:
    controllers: dict[str, tuple[str, Path]] = {}
    for name in ("memory", "pids"):
        own = root / name / "own"
        own.mkdir(parents=True)
        (own / "cgroup.procs").write_text("")
        controllers[name] = ("v1", own)
    top = None
    if unified:
        top = root / "unified" / "own"
        top.mkdir(parents=True)
        (top / "cgroup.procs").write_text("")
    return CgroupHost(controllers=controllers, unified=top)


def wait_done(primer: AttachPrimer) -> None:
    assert primer._busy.acquire(timeout=5), "the priming write did not finish"
    primer._busy.release()


@pytest.mark.parametrize("unified", [False, True])
def test_the_group_primes_with_its_own_pid_in_a_v1_cgroup_it_is_in(
    tmp_path: Path, unified: bool
) -> None:
    group = CgroupGroup(_fake_host(tmp_path, unified), "fam")
    assert group.primer.procs is None  # before open: nothing to prime
    assert group.primer.prime() is False
    group.open()
    procs = group.primer.procs
    assert procs is not None
    assert procs.parent.name == "own"  # ours, not the group or a leaf
    assert procs.parent.parent.name in ("memory", "pids")  # a v1 one even when v2 is there
    assert group.primer.prime() is True
    wait_done(group.primer)
    assert procs.read_text() == str(os.getpid())


def test_one_priming_write_at_a_time_and_a_failure_is_harmless(tmp_path: Path) -> None:
    primer = AttachPrimer(tmp_path / "gone" / "cgroup.procs")
    primer._busy.acquire()  # a write under way
    assert primer.prime() is False
    primer._busy.release()
    assert primer.prime() is True  # the write fails (no such file): ignored
    wait_done(primer)
    assert primer.prime() is True  # and the next one may start
    wait_done(primer)


def test_priming_on_this_host_moves_nothing(tmp_path: Path) -> None:
    host = detect_host()
    if not host.usable:
        pytest.skip("no usable cgroups here")
    before = Path("/proc/self/cgroup").read_text()
    group = CgroupGroup(host, f"primer{os.getpid()}")
    group.open()
    try:
        assert group.primer.prime() is True
        wait_done(group.primer)
        assert Path("/proc/self/cgroup").read_text() == before
    finally:
        group.close()
