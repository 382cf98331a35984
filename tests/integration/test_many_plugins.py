"""Many plugins on one manager: one health timer for all, cgroup counters, a graceful stop-all.

The shared timer (``rosey.manager.health.HealthBeat``) must still ping every plugin and still
notice the one that hangs; resource samples come from the plugin's cgroup counters where it has
them (``rosey.sandbox.stats``); stopping everything at once is still dependency-ordered and
graceful (each in-flight command finishes, ``on_stop`` runs) however many plugins stop together.
"""

from __future__ import annotations

import asyncio
import collections
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from test_manager_kit import Harness, make_config, running_manager, write_plugin

from helpers import eventually
from rosey.bus.client import Message
from rosey.manager.health import HealthBeat
from rosey.sandbox.confine import Sandbox
from rosey.sandbox.host import detect_host
from rosey.sandbox.stats import TreeSample, TreeSampler, parse_memory

HOST = detect_host()
PROBE = Path(__file__).resolve().parents[1] / "fixtures" / "plugins" / "sdk_probe" / "probe.py"


def beat_tasks() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name() == "health beat" and not t.done()]


async def test_one_timer_pings_every_plugin_and_restarts_only_the_hung_one(
    nats_url: str, tmp_path: Path
) -> None:
    health = {"interval_s": 0.5, "timeout_s": 2, "failure_threshold": 2}
    names = [f"p{i}" for i in range(6)]
    for name in names:
        write_plugin(tmp_path / "plugins", name, health=health)
    pings: collections.Counter[str] = collections.Counter()
    pinged = asyncio.Event()

    async def count(msg: Message) -> None:
        pings[msg.subject.split(".")[2]] += 1
        pinged.set()

    async with running_manager(nats_url, make_config(tmp_path / "plugins", tmp_path)) as h:
        await h.client.subscribe("rosey.health.*.ping", count)
        await h.client.flush()
        await h.manager.start_all()
        async with asyncio.timeout(20):
            while not all(pings[name] >= 3 for name in names):
                pinged.clear()
                await pinged.wait()
        assert len(beat_tasks()) == 1  # one timer for every plugin
        beat = HealthBeat.of(h.manager.bus)
        assert beat.beats >= 3 * len(names)
        hung_pid = h.pid("p3")
        blocked = asyncio.create_task(h.command("p3", "block"))  # never answered
        crashed = await h.events.wait("p3", "crashed", timeout=30)
        blocked.cancel()
        assert "health check failed 2 times in a row" in crashed["reason"]
        await h.events.wait("p3", "running", after=h.events.index("p3", "crashed"))
        assert h.pid("p3") != hung_pid
        for name in names:
            if name != "p3":
                assert "unhealthy" not in h.events.states(name), h.events.of(name)
                assert h.manager.get_plugin_status(name)["restart_count"] == 0
        before = dict(pings)
        async with asyncio.timeout(20):  # the restarted plugin is pinged again, the others too
            while not all(pings[name] >= before[name] + 2 for name in names):
                pinged.clear()
                await pinged.wait()
    assert beat_tasks() == []  # the timer ends with its last plugin


def write_probe(root: Path, name: str, dependencies: list[str]) -> None:
    """A copy of the ``sdk_probe`` fixture (``slow`` commands, ``on_stop`` leaves a file)."""
    folder = root / name
    folder.mkdir(parents=True)
    shutil.copy(PROBE, folder / "probe.py")
    manifest = {
        "name": name,
        "version": "1.0.0",
        "entrypoint": "probe:ProbePlugin",
        "dependencies": dependencies,
        "stop_timeout_s": 10,
    }
    (folder / "plugin.yaml").write_text(yaml.safe_dump(manifest))


async def test_stop_all_is_concurrent_dependency_ordered_and_graceful_for_many_plugins(
    nats_url: str, tmp_path: Path
) -> None:
    plugins = tmp_path / "plugins"
    chain = {"base": [], "mid": ["base"], "top": ["mid"]}
    loose = [f"q{i}" for i in range(12)]
    for name, deps in chain.items():
        write_probe(plugins, name, deps)
    for name in loose:
        write_probe(plugins, name, [])
    names = [*chain, *loose]
    async with running_manager(nats_url, make_config(plugins, tmp_path)) as h:
        await h.manager.start_all()
        for name in names:
            assert h.manager.get_plugin_status(name)["state"] == "running"
        pending = {name: asyncio.create_task(h.command(name, "slow", "2", name)) for name in names}

        async def all_in_flight() -> bool:
            checks = [h.manager.health_check_plugin(name) for name in names]
            return all(c.get("in_flight") == 1 for c in await asyncio.gather(*checks))

        await eventually(all_in_flight, 10, "one command in flight in every plugin")
        start = len(h.events.events)
        await h.manager.stop_all()
        replies = {name: await task for name, task in pending.items()}
        for name in names:
            assert replies[name]["text"] == f"slow 2 {name} done", replies[name]
            assert (h.manager.ctx.data_dir(name) / "on_stop_ran").read_text() == "yes"
            status = h.manager.get_plugin_status(name)
            assert (status["state"], status["last_exit_code"]) == ("stopped", 0), status
        order = [(e["plugin"], e["state"]) for e in h.events.events[start:]]
        # Dependents first: a dependency begins stopping only once its dependent has stopped.
        assert order.index(("top", "stopped")) < order.index(("mid", "stopping"))
        assert order.index(("mid", "stopped")) < order.index(("base", "stopping"))
        # Independent plugins stop together: each had a 2 s command to finish, yet every one of
        # them was asked to stop before the first of them was done.
        first_done = min(order.index((name, "stopped")) for name in loose)
        assert all(order.index((name, "stopping")) < first_done for name in loose)


async def wait_sample(
    h: Harness, name: str, check: Callable[[TreeSample], bool], what: str, timeout: float = 20
) -> None:
    """Until the health monitor's latest sample of ``name`` satisfies ``check``."""

    async def holds() -> bool:
        run = h.manager.supervisors[name]._run
        sample = run.monitor.last_sample if run is not None and run.monitor else None
        return sample is not None and check(sample)

    await eventually(holds, timeout, f"{name}: a sample with {what}")


@pytest.mark.skipif(
    not {"memory", "pids"} <= set(HOST.controllers),
    reason=f"this host offers no writable memory and pids cgroups: {HOST.notes}",
)
async def test_resource_samples_read_the_cgroup_counters(
    nats_url: str, tmp_path: Path, sandbox: Sandbox
) -> None:
    """A memory hog and a CPU spinner are seen through their cgroup's counters."""
    write_plugin(
        tmp_path / "plugins",
        "greedy",
        health={"interval_s": 0.3, "timeout_s": 5, "failure_threshold": 100},
        limits={"memory_mb": 512, "cpu_percent": 100},
    )
    config = make_config(tmp_path / "plugins", tmp_path)
    async with running_manager(nats_url, config, spawner=sandbox.spawner()) as h:
        await h.manager.start_plugin("greedy")
        process = h.manager.supervisors["greedy"]._run.process  # type: ignore[union-attr]
        counters = process.confinement.counters()
        cpu = HOST.controllers.get("cpu")
        if HOST.unified is None and (cpu is None or not (cpu[1] / "cpuacct.usage").exists()):
            pytest.skip(f"no cgroup here counts a plugin's CPU time: {HOST.notes}")
        assert counters is not None, process.layers  # the cheap path is the one in use here
        assert (await h.command("greedy", "hog", "64"))["text"] == "holding 64 MB"
        await wait_sample(h, "greedy", lambda s: s.rss_mb >= 64, "64 MB")
        assert process._sampler is not None
        assert process._sampler._counters == counters  # the monitor samples through them
        # The figure is the cgroup's: what its memory.stat says, not a walk of /proc.
        charged = parse_memory(counters.memory_version, counters.memory.read_text())
        assert charged is not None
        assert charged >= 64 * 2**20
        sampler = TreeSampler(process.pid, process.confinement.members, counters)
        sample = sampler._from_counters(counters, {process.pid})
        assert sample is not None
        assert sample.rss_mb >= 64
        assert sample.threads == int(counters.tasks.read_text())
        assert (await h.command("greedy", "spin", "30"))["text"] == "spinning"
        await wait_sample(
            h, "greedy", lambda s: s.cpu_percent >= 10 and s.threads >= 2, "a spinning thread"
        )
