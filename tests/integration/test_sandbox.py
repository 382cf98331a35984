"""The sandbox with real plugin processes (fixture plugins) and a real nats-server.

Each test spawns a misbehaving fixture plugin through ``Sandbox.spawner()`` (cgroups where the
host has them, rlimits, tree kill) and checks that the kernel held it to its limits, that stop
reaches its whole tree, and that nothing it started remains afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import is_alive, wait_gone
from rosey.bus.client import EventBus
from rosey.protocol import subjects, wire
from rosey.sandbox.cgroups import GROUP_PREFIX, CgroupGroup
from rosey.sandbox.confine import Sandbox
from rosey.sandbox.host import detect_host
from rosey.sandbox.limits import ResourceLimits
from rosey.sandbox.logs import LOG_BURST_BYTES, LOG_RATE_BYTES, OUTPUT_TAG, STAMP_LENGTH
from rosey.sandbox.process import PlainSpawner, PluginProcess, Spawner, SpawnSpec

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "plugins"
HOST = detect_host()


def needs(controller: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(
        controller not in HOST.controllers,
        reason=f"this host offers no writable {controller} cgroup: {HOST.notes}",
    )


def make_spec(
    tmp_path: Path,
    nats_url: str,
    name: str,
    *,
    limits: ResourceLimits | None = None,
    config: dict[str, Any] | None = None,
    **extra: Any,
) -> SpawnSpec:
    manifest = yaml.safe_load((FIXTURES / name / "plugin.yaml").read_text())
    data_dir = tmp_path / "data" / name
    bootstrap = {
        "name": name,
        "plugin_dir": str(FIXTURES / name),
        "entrypoint": manifest["entrypoint"],
        "data_dir": str(data_dir),
        "nats_url": nats_url,
        "config": {**manifest.get("config", {}), **(config or {})},
        "stop_timeout_s": manifest.get("stop_timeout_s", 5),
    }
    return SpawnSpec(
        name=name,
        plugin_dir=FIXTURES / name,
        data_dir=data_dir,
        log_path=tmp_path / "logs" / f"{name}.log",
        bootstrap=bootstrap,
        limits=limits or ResourceLimits(),
        **extra,
    )


@pytest.fixture
def rlimit_box() -> Iterator[Sandbox]:
    """A sandbox that uses no cgroups: rlimits and the process tree only."""
    box = Sandbox(None, family="unused")
    box.open()
    try:
        yield box
    finally:
        box.close()  # its fork server


@contextlib.asynccontextmanager
async def running(spawner: Spawner, spec: SpawnSpec) -> AsyncIterator[PluginProcess]:
    """Spawn, wait until ready; always stop it afterwards."""
    process = await spawner.spawn(spec)
    try:
        async with asyncio.timeout(20):
            message = await process.receive()
        assert message is not None, process.stderr_tail.lines()
        assert message["type"] == "ready", (message, process.stderr_tail.lines())
        yield process
    finally:
        await process.stop(1.0)


async def wait_for_stderr(process: PluginProcess, needle: str, timeout: float) -> str:
    async with asyncio.timeout(timeout):
        while True:
            found = [line for line in process.stderr_tail.lines() if needle in line]
            if found:
                return found[-1]
            await asyncio.sleep(0.02)


@needs("memory")
async def test_memory_hog_is_killed_by_the_kernel_at_its_cgroup_limit(
    sandbox: Sandbox, nats_url: str, tmp_path: Path
) -> None:
    spec = make_spec(tmp_path, nats_url, "memory_hog", limits=ResourceLimits(memory_mb=64))
    async with running(sandbox.spawner(), spec) as process:
        assert any(layer.startswith("cgroup-") for layer in process.layers)
        async with asyncio.timeout(30):
            code = await process.wait()
        assert code == -9  # the OOM killer's SIGKILL
        reason = process.limit_reason()
        assert reason is not None
        assert reason.startswith("memory limit 64 MB hit"), reason
    assert await wait_gone([process.pid], timeout=5) == []


async def test_memory_hog_under_rlimit_only_gets_memory_error(
    rlimit_box: Sandbox, nats_url: str, tmp_path: Path
) -> None:
    spec = make_spec(tmp_path, nats_url, "memory_hog", limits=ResourceLimits(memory_mb=96))
    async with running(rlimit_box.spawner(), spec) as process:
        assert process.layers == ["rlimit"]
        line = await wait_for_stderr(process, "MemoryError", timeout=30)
        allocated = int(line.split("after ")[1].split(" MB")[0])
        assert allocated < 96
        assert process.returncode is None  # refused memory, not killed: the plugin decides
        assert process.limit_reason() == "memory limit 96 MB hit: an allocation failed"
    assert await wait_gone([process.pid], timeout=5) == []


@needs("pids")
async def test_fork_bomb_is_bounded_by_max_processes(
    sandbox: Sandbox, nats_url: str, tmp_path: Path
) -> None:
    spec = make_spec(
        tmp_path, nats_url, "forkbomb", limits=ResourceLimits(max_processes=8), config={"forks": 50}
    )
    async with running(sandbox.spawner(), spec) as process:
        outcome = json.loads((spec.data_dir / "forkbomb.json").read_text())
        assert outcome["refused"] > 0  # EAGAIN happened
        assert outcome["started"] + outcome["refused"] == 50
        assert outcome["started"] < 8  # the plugin itself is one of the 8 tasks
        sample = process.sample()
        assert sample is not None
        assert sample.processes == outcome["started"] + 1
        assert sample.threads <= 8
        reason = process.limit_reason()
        assert reason == f"process limit 8 hit: {outcome['refused']} forks refused", reason
        tree = [process.pid, *outcome["pids"]]
        # The host still forks: the limit held this plugin only.
        probe = await asyncio.create_subprocess_exec("true")
        async with asyncio.timeout(10):
            assert await probe.wait() == 0
    assert await wait_gone(tree, timeout=5) == []


@pytest.mark.parametrize("confined", [True, False], ids=["cgroup", "no-cgroup"])
async def test_stop_kills_the_grandchild_that_escaped_with_setsid(
    confined: bool, sandbox: Sandbox, rlimit_box: Sandbox, nats_url: str, tmp_path: Path
) -> None:
    if confined and not HOST.usable:
        pytest.skip(f"no usable cgroup hierarchy: {HOST.notes}")
    box = sandbox if confined else rlimit_box
    spec = make_spec(tmp_path, nats_url, "forker")
    async with running(box.spawner(), spec) as process:
        pids = json.loads((spec.data_dir / "forker-pids.json").read_text())
        grandchild = pids["grandchild"]
        assert os.getsid(grandchild) != os.getsid(process.pid)  # it left the plugin's session
        sample = process.sample()
        assert sample is not None
        assert sample.processes == 3
        started = time.monotonic()
        await process.stop(2.0)
        assert time.monotonic() - started < 2.0 + 1.0
    assert await wait_gone(pids.values(), timeout=5) == []


async def test_exit_is_seen_while_a_grandchild_still_holds_the_pipes(
    nats_url: str, tmp_path: Path
) -> None:
    """Regression: on Python 3.11 ``asyncio`` ``Process.wait()`` also waits for every pipe to
    close, so a plugin that exited while a child it forked kept its stdout open was never seen
    to exit (no crash detection, stop hung until its timeout)."""
    spec = make_spec(tmp_path, nats_url, "forker")
    process = await PlainSpawner().spawn(spec)  # no cgroup: nothing kills the children for us
    pids: dict[str, int] = {}
    try:
        async with asyncio.timeout(20):
            message = await process.receive()
            assert message is not None
            assert message["type"] == "ready"
        pids = json.loads((spec.data_dir / "forker-pids.json").read_text())
        await process.send({"type": "stop"})
        async with asyncio.timeout(10):
            assert await process.wait() == 0
        assert is_alive(pids["child"])  # the pipes are still held open
    finally:
        await process.stop(0.5)
        if pids:  # started by this test; the group kill cannot reach the setsid'd one
            with contextlib.suppress(ProcessLookupError):
                os.kill(pids["grandchild"], 9)
    assert await wait_gone(pids.values(), timeout=5) == []


async def test_sigterm_ignorer_is_killed_within_its_stop_timeout_plus_one_second(
    sandbox: Sandbox, nats_url: str, tmp_path: Path
) -> None:
    spec = make_spec(tmp_path, nats_url, "ignores_sigterm")
    async with running(sandbox.spawner(), spec) as process:
        started = time.monotonic()
        code = await process.stop(2.0)
        elapsed = time.monotonic() - started
        assert code == -9
        assert elapsed < 2.0 + 1.0, f"stop took {elapsed:.2f} s"
        assert "ignores_sigterm: refusing to stop" in process.stderr_tail.lines()
    assert await wait_gone([process.pid], timeout=5) == []


async def test_flooder_log_stays_under_its_cap_and_the_plugin_keeps_answering(
    sandbox: Sandbox, nats_url: str, tmp_path: Path
) -> None:
    cap, backups = 64 * 1024, 2
    spec = make_spec(tmp_path, nats_url, "flooder", log_max_bytes=cap, log_backups=backups)
    async with running(sandbox.spawner(), spec) as process, EventBus(nats_url, name="test") as bus:
        async with asyncio.timeout(60):
            while process.log_bytes_written < 40 * cap:  # noqa: ASYNC110 - a counter, no event
                await asyncio.sleep(0.05)
        reply = await bus.request(subjects.health_ping("flooder"), {}, timeout=5)
        assert reply.json()["ok"] is True
        files = sorted(spec.log_path.parent.glob("flooder.log*"))
        assert [f.name for f in files] == ["flooder.log", "flooder.log.1", "flooder.log.2"]
        assert sum(f.stat().st_size for f in files) <= cap * (backups + 1)
    assert await wait_gone([process.pid], timeout=5) == []


async def test_a_flood_of_empty_lines_is_held_back_not_paid_for_by_the_manager(
    sandbox: Sandbox, nats_url: str, tmp_path: Path
) -> None:
    """Every line gets a timestamp, so a flood of empty lines is the costliest output for the
    manager (about 30 log bytes per byte read). Past the plugin's log budget the pump stops
    reading: the pipe fills and the flooder's own writes block."""
    spec = make_spec(tmp_path, nats_url, "flooder", config={"empty": True})
    started = time.monotonic()
    async with running(sandbox.spawner(), spec) as process, EventBus(nats_url, name="test") as bus:
        async with asyncio.timeout(60):
            while process.output_budget.paused_s < 1.0:  # noqa: ASYNC110 - a counter, no event
                await asyncio.sleep(0.05)
        elapsed = time.monotonic() - started
        one_read = 64 * 1024 * (STAMP_LENGTH + len(OUTPUT_TAG) + 2)  # written for one read
        assert process.log_bytes_written <= LOG_BURST_BYTES + LOG_RATE_BYTES * elapsed + one_read
        request = wire.command_request(
            "flooded", [], user={"username": "t", "rank": 0}, channel="", platform="test",
            correlation_id="c1",
        )  # fmt: skip
        reply = await bus.request(subjects.command_execute("flooder"), request, timeout=5)
        flooded = int(reply.json()["text"])
        # What it wrote is what the log took (one byte became at least one), plus what the
        # pipe and one read hold: its writes were blocked, not buffered somewhere without end.
        assert flooded <= process.log_bytes_written + 2 * 1024 * 1024
    assert await wait_gone([process.pid], timeout=5) == []


async def test_layers_are_reported_and_the_cgroup_leaf_goes_with_the_process(
    sandbox: Sandbox, nats_url: str, tmp_path: Path
) -> None:
    spec = make_spec(tmp_path, nats_url, "crash_on_command")
    async with running(sandbox.spawner(), spec) as process:
        assert process.layers == [*HOST.layers, "rlimit"]
        leaves = [d / f"crash_on_command-{process.pid}" for d in sandbox.cgroup_dirs]
        assert all(leaf.is_dir() for leaf in leaves)
        assert all(
            str(process.pid) in (leaf / "cgroup.procs").read_text().split() for leaf in leaves
        )
        assert resource.prlimit(process.pid, resource.RLIMIT_NOFILE) == (256, 256)
        assert resource.prlimit(process.pid, resource.RLIMIT_CORE) == (0, 0)
    assert sandbox.leaves_removed(timeout=5)  # by a worker thread, off the event loop
    assert [leaf for leaf in leaves if leaf.exists()] == []


@pytest.mark.skipif(not HOST.usable, reason=f"no usable cgroup hierarchy: {HOST.notes}")
async def test_a_stale_group_of_a_dead_bot_is_emptied_and_removed(tmp_path: Path) -> None:
    family = f"test{uuid.uuid4().hex[:10]}"
    gone = await asyncio.create_subprocess_exec("true")
    await gone.wait()  # a pid that no longer runs: the "dead bot" owning the stale group
    stale = CgroupGroup(HOST, family, owner=gone.pid)
    stale.open()
    leaf = stale.leaf("orphan-1", ResourceLimits())
    orphan = await asyncio.create_subprocess_exec("sleep", "60", start_new_session=True)
    try:
        leaf.add(orphan.pid)
        box = Sandbox(HOST, family=family)
        box.open()  # finds the group of a bot that is not running: kills and removes it
        try:
            async with asyncio.timeout(5):
                assert await orphan.wait() == -9
            assert [d for d in stale.dirs.values() if d.exists()] == []
            assert all(d.name.startswith(GROUP_PREFIX + family) for d in box.cgroup_dirs)
        finally:
            box.close()
    finally:
        if orphan.returncode is None:
            orphan.kill()
            await orphan.wait()
        stale.close()
