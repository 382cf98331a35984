"""``PluginCgroup.kill`` on this host's cgroups: every process in the leaf is killed, a tree
that keeps forking included; it returns once they are all sent SIGKILL (not once they are
gone), and ``remove`` then waits until the leaf is empty and removes it.

Both ways it kills: ``cgroup.kill`` (a cgroup v2 leaf) and, without it, passes that signal each
process until one finds none it has not killed yet (a v1-only leaf).
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Iterator

import pytest

from helpers import eventually, wait_gone
from rosey.sandbox.cgroups import CgroupGroup, PluginCgroup
from rosey.sandbox.host import UNIFIED, detect_host
from rosey.sandbox.limits import ResourceLimits
from rosey.sandbox.reaper import cgroup_pids

HOST = detect_host()

pytestmark = pytest.mark.skipif(not HOST.usable, reason=f"no usable cgroups: {HOST.notes}")

#: Forks a sleeping child every millisecond, for ever: a tree that grows while it is killed.
FORKER = """
import os, sys, time
sys.stdin.readline()  # once it is in its leaf
while True:
    if os.fork() == 0:
        time.sleep(60)
        os._exit(0)
    time.sleep(0.001)
"""


@pytest.fixture
def group() -> Iterator[CgroupGroup]:
    box = CgroupGroup(HOST, f"test{uuid.uuid4().hex[:10]}")
    box.open()
    try:
        yield box
    finally:
        box.close()


@pytest.mark.parametrize("how", ["cgroup.kill", "passes"])
async def test_kill_ends_a_forking_tree_and_remove_leaves_nothing(
    group: CgroupGroup, how: str
) -> None:
    leaf = group.leaf(f"forker-{uuid.uuid4().hex[:6]}", ResourceLimits())
    if how == "passes":  # only the v1 hierarchies: no cgroup.kill
        v1 = {h: d for h, d in leaf.dirs.items() if h != UNIFIED}
        if not v1:
            pytest.skip("no v1 hierarchy here")
        leaf = PluginCgroup(leaf.name, v1, dict(leaf.enforcing))
    elif not (leaf.kill_dir / "cgroup.kill").exists():
        pytest.skip("no cgroup.kill here")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", FORKER, stdin=asyncio.subprocess.PIPE, start_new_session=True
    )
    try:
        leaf.add(proc.pid)
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        proc.stdin.close()

        async def grown() -> bool:
            return len(cgroup_pids(str(leaf.kill_dir))) >= 5

        await eventually(grown, 10, "the forker has a tree of 5 processes")
        members = cgroup_pids(str(leaf.kill_dir))
        leaf.kill()
        async with asyncio.timeout(10):
            assert await proc.wait() == -9
        assert await wait_gone(members, timeout=10) == []
        assert leaf.remove()
        assert [d for d in leaf.dirs.values() if d.exists()] == []
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        leaf.remove()
