"""A restart's cgroup work, kept off the event loop and ahead of the fork.

The first move into a cgroup after a quiet moment waits for a whole RCU grace period while it
holds the kernel's cgroup mutex (``AttachPrimer``). So a crash primes that lock as soon as
its tree is killed (``SandboxConfinement.restart_ahead``), the old leaf is removed by a worker
thread (``LeafRemover``), and a leaf killed once is not killed (written) again: the event loop
never waits for that lock on a restart's way. Fake cgroup folders (plain directories with
``cgroup.procs`` files) and real processes.
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from rosey.sandbox.cgroups import AttachPrimer, PluginCgroup
from rosey.sandbox.confine import SandboxConfinement
from rosey.sandbox.leaf_remover import LeafRemover


def fake_leaf(root: Path, name: str, pids: list[int] | None = None) -> PluginCgroup:
    """A leaf in two fake v1 hierarchies (no ``cgroup.kill``: killed pid by pid)."""
    dirs: dict[str, Path] = {}
    for hierarchy in ("memory", "pids"):
        folder = root / hierarchy / name
        folder.mkdir(parents=True)
        (folder / "cgroup.procs").write_text("".join(f"{pid}\n" for pid in pids or []))
        dirs[hierarchy] = folder
    return PluginCgroup(name, dirs, {"memory": "v1", "pids": "v1"})


@pytest.fixture
def sleepers() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Two real processes to put in fake leaves; never left behind."""
    procs = [subprocess.Popen(["sleep", "60"]) for _ in range(2)]
    try:
        yield procs
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def wait_done(primer: AttachPrimer) -> None:
    assert primer._busy.acquire(timeout=5), "the priming write did not finish"
    primer._busy.release()


def test_a_killed_leaf_is_not_killed_again(
    tmp_path: Path, sleepers: list[subprocess.Popen[bytes]]
) -> None:
    first, second = sleepers
    leaf = fake_leaf(tmp_path, "p-1", [first.pid])
    assert leaf.kill() == 1
    assert first.wait(timeout=5) == -9
    # A real leaf cannot gain a process once all of it has SIGKILL pending (none of them
    # forks any more); the fake one can: the second kill neither looks nor signals.
    (leaf.dirs["pids"] / "cgroup.procs").write_text(f"{second.pid}\n")
    assert leaf.kill() == 0
    assert second.poll() is None


def test_an_empty_leaf_can_still_be_killed_later(
    tmp_path: Path, sleepers: list[subprocess.Popen[bytes]]
) -> None:
    """Only a kill that signalled counts: one that found the leaf empty leaves it killable."""
    leaf = fake_leaf(tmp_path, "p-2")
    leaf.dirs = {"unified": tmp_path / "unified" / "p-2", **leaf.dirs}
    leaf.dirs["unified"].mkdir(parents=True)
    (leaf.dirs["unified"] / "cgroup.events").write_text("populated 0\nfrozen 0\n")
    (leaf.dirs["unified"] / "cgroup.procs").write_text("")
    assert leaf.kill() == 0
    (leaf.dirs["unified"] / "cgroup.events").write_text("populated 1\nfrozen 0\n")
    (leaf.dirs["unified"] / "cgroup.procs").write_text(f"{sleepers[0].pid}\n")
    assert leaf.kill() == 1
    assert sleepers[0].wait(timeout=5) == -9


def test_the_remover_removes_leaves_in_a_worker_and_says_when_it_is_idle(
    tmp_path: Path,
) -> None:
    remover = LeafRemover()
    leaves = [fake_leaf(tmp_path, f"p-{n}") for n in range(3)]
    for leaf in leaves:
        (leaf.dirs["memory"] / "cgroup.procs").unlink()  # an empty leaf: a bare folder
        (leaf.dirs["pids"] / "cgroup.procs").unlink()
    try:
        for leaf in leaves:
            remover.remove(leaf)
        assert remover.idle(timeout=5)
        assert [d for leaf in leaves for d in leaf.dirs.values() if d.exists()] == []
        assert remover._thread is not None
        assert remover._thread.name == "rosey cgroup remover"
    finally:
        remover.close()
    assert remover._thread is None


def test_a_leaf_that_cannot_be_removed_is_logged_and_the_worker_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    remover = LeafRemover()
    stuck = fake_leaf(tmp_path, "stuck")
    (stuck.dirs["pids"] / "keep").write_text("")  # a folder rmdir cannot remove (ENOTEMPTY)
    later = fake_leaf(tmp_path, "later")
    for folder in later.dirs.values():
        (folder / "cgroup.procs").unlink()
    try:
        with caplog.at_level(logging.WARNING, logger="rosey.sandbox"):
            remover.remove(stuck)
            remover.remove(later)
            assert remover.idle(timeout=5)
        assert "stuck: could not remove" in caplog.text
        assert [d for d in later.dirs.values() if d.exists()] == []
    finally:
        remover.close()


def test_a_crash_primes_the_attach_lock_when_its_tree_is_killed(tmp_path: Path) -> None:
    procs = tmp_path / "own" / "cgroup.procs"
    procs.parent.mkdir()
    procs.write_text("")
    primer = AttachPrimer(procs)
    confinement = SandboxConfinement(
        ["cgroup-v1"],
        pgid=os.getpid(),
        cgroup=fake_leaf(tmp_path, "p-3"),
        warden=None,
        memory_by_rlimit=False,
        prime=primer.prime,
    )
    confinement.restart_ahead()
    wait_done(primer)
    assert procs.read_text() == str(os.getpid())  # the move of nothing: ourselves


def test_without_a_cgroup_there_is_nothing_to_prime(tmp_path: Path) -> None:
    procs = tmp_path / "cgroup.procs"
    procs.write_text("")
    primer = AttachPrimer(procs)
    confinement = SandboxConfinement(
        ["rlimit"], pgid=os.getpid(), cgroup=None, warden=None, memory_by_rlimit=False,
        prime=primer.prime,
    )  # fmt: skip
    confinement.restart_ahead()
    wait_done(primer)
    assert procs.read_text() == ""


def test_release_hands_the_leaf_to_the_remover_and_keeps_its_counters(tmp_path: Path) -> None:
    leaf = fake_leaf(tmp_path, "p-4")
    oom = leaf.dirs["memory"] / "memory.oom_control"
    oom.write_text("oom_kill_disable 0\noom_kill 2\n")
    remover = LeafRemover()
    confinement = SandboxConfinement(
        ["cgroup-v1"], pgid=os.getpid(), cgroup=leaf, warden=None, memory_by_rlimit=False,
        remover=remover,
    )  # fmt: skip
    try:
        confinement.release()  # read at the handover, before the worker gets to it
        oom.write_text("oom_kill_disable 0\noom_kill 5\n")
        assert remover.idle(timeout=5)
        assert confinement.events().oom_kills == 2
    finally:
        remover.close()


def test_close_skips_what_is_still_queued(tmp_path: Path) -> None:
    """The bot is stopping: its group's own close removes every leaf at once, after."""
    remover = LeafRemover()
    stuck = fake_leaf(tmp_path, "stuck")
    (stuck.dirs["pids"] / "keep").write_text("")
    queued = fake_leaf(tmp_path, "queued")
    for folder in queued.dirs.values():
        (folder / "cgroup.procs").unlink()
    with remover._done:  # the worker cannot finish the first one before close
        remover.remove(stuck)
        remover.remove(queued)
        remover._closing = True
    remover.close()
    remover.remove(fake_leaf(tmp_path, "later"))
    assert remover.idle(timeout=5)
    assert all(d.exists() for d in queued.dirs.values())
    assert (tmp_path / "pids" / "later").exists()
