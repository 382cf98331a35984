"""Spawn→ready of one plugin, next to the floor measured in the same run.

    .venv/bin/python bench/plugin_start.py [--runs 30]

The floor is a bare child process that imports nats, connects to the same server, publishes one
message and says so over a pipe: what any NATS-connected Python process costs. The plugin is a
trivial one, started as ``rosey run`` starts plugins (the confined sandbox spawner with default
limits, control socket, bootstrap, SDK runner, subscriptions, readiness), four ways, runs
interleaved: exec'd plainly (``spawned``) or forked from the preloaded fork server (``forked``,
``rosey.sandbox.forkspawner``: the default), each with the limits only (cgroups, rlimits: what a
plugin had before issue 10's isolation layers) and with every layer ``rosey run`` applies by
default (its own PID and IPC namespaces, Landlock, no capabilities, seccomp). Also prints the
idle memory of the plugin's whole process tree (with namespaces: the waiter and init too) and
of each of its processes, and the ratios forked / spawned.
Targets (issue "Plugin runtime"): ratio ≤ 1.3, idle RSS ≤ 30 MiB; (issue 13) forked idle USS
≤ 6 MiB, PSS reported.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import psutil
from drivers import namespace_init
from floor import floor_once, summary, write_trivial_plugins

from rosey.bus.server import EmbeddedServer
from rosey.protocol import subjects
from rosey.sandbox.confine import open_sandbox
from rosey.sandbox.forkspawner import ForkSpawner
from rosey.sandbox.process import PlainSpawner, PluginProcess, SpawnSpec


def write_trivial_plugin(root: Path) -> Path:
    return write_trivial_plugins(root / "plugins", 1, "trivial") / "trivial0"


def trivial_bootstrap(folder: Path, data: Path, nats_url: str) -> dict[str, object]:
    """The bootstrap the manager gives the trivial plugin, asking for no isolation layer."""
    return {
        "name": "trivial",
        "plugin_dir": str(folder),
        "entrypoint": "trivial:Trivial",
        "data_dir": str(data),
        "nats_url": nats_url,
        "user": None,
        "password": None,
        "inbox_prefix": subjects.plugin_inbox_prefix("trivial"),
        "config": {},
        "stop_timeout_s": 5,
    }


def every_layer(
    bootstrap: dict[str, object],
    folder: Path,
    data: Path,
    port: int,
    extra_read: Sequence[str] = (),
) -> dict[str, object]:
    """``bootstrap`` with every layer spawn_spec (rosey.manager.spawnspec) asks for by default
    (the runner applies them); ``extra_read``: more paths it may read (its environment)."""
    return {
        **bootstrap,
        "isolation": {"pid_namespace": True, "ipc_namespace": True, "plugin_uids": False},
        "sandbox": {
            "read": [str(folder.resolve()), *extra_read],
            "write": [str(data)],
            "connect_ports": [port],
            "network": False,
        },
        "seccomp": {"network": False},
    }


async def spawn_ready(spawner: PlainSpawner, spec: SpawnSpec) -> tuple[float, PluginProcess]:
    started = time.perf_counter()
    process = await spawner.spawn(spec)
    while True:
        message = await process.receive()
        if message is None:
            raise RuntimeError(
                "plugin exited before ready:\n" + "\n".join(process.stderr_tail.lines())
            )
        if message["type"] == "confined":  # the layers the runner put itself under
            process.layers = [*process.layers, *message["layers"]]
        if message["type"] == "ready":
            return time.perf_counter() - started, process


async def main(runs: int) -> None:
    with tempfile.TemporaryDirectory(prefix="rosey-bench-") as tmp:
        root = Path(tmp)
        folder = write_trivial_plugin(root)
        async with EmbeddedServer(root / "nats") as server, open_sandbox(root / "state") as sandbox:
            # The production spawner: cgroups/rlimits as the host offers, warden registration,
            # the fork server; and the same sandbox's plain spawn beside it.
            forking = sandbox.spawner()
            assert isinstance(forking, ForkSpawner)
            assert forking.server is not None, "the fork server did not start"
            spawners = {
                "spawned": PlainSpawner(confine=sandbox.confine, prepare=sandbox.prepare),
                "forked": forking,
            }
            data = root / "data" / "trivial"
            bootstrap = trivial_bootstrap(folder, data, server.url)
            isolated = every_layer(bootstrap, folder, data, server.port)
            boots = {"limits only": bootstrap, "every layer": isolated}
            variants = {
                f"{how}, {layers}": (spawner, boot)
                for how, spawner in spawners.items()
                for layers, boot in boots.items()
            }
            floors: list[float] = []
            starts: dict[str, list[float]] = {name: [] for name in variants}
            memory: dict[str, tuple[float, float, float]] = {}
            own: dict[str, list[float]] = {}
            layers: dict[str, list[str]] = {}
            # Interleave them so drift on a shared machine hits all alike.
            for i in range(runs + 2):
                floor = await floor_once(server.url)
                if i >= 2:  # the first runs warm the page cache
                    floors.append(floor)
                for name, (spawner, boot) in variants.items():
                    spec = SpawnSpec(
                        name="trivial",
                        plugin_dir=folder,
                        data_dir=root / "data" / "trivial",
                        log_path=root / "logs" / "trivial.log",
                        bootstrap=boot,
                    )
                    start, process = await spawn_ready(spawner, spec)
                    assert name.startswith(process.how), (name, process.how)
                    if i >= 2:
                        starts[name].append(start)
                    if i == runs + 1:
                        await asyncio.sleep(1.0)  # idle: let the plugin settle
                        memory[name] = tree_memory(process.pid)
                        own[name] = tree_uss(process.pid)
                        layers[name] = list(process.layers)
                    await process.stop(5)
    floor_med, floor_p90 = summary(floors)
    python = sys.version.split()[0]
    print(f"plugin spawn→ready over {runs} runs (python {python}, {os.cpu_count()} cores)")
    print(f"{'':36}{'median ms':>10}{'p90 ms':>9}{'ratio':>7}  idle tree RSS / USS / PSS MiB")
    print(f"{'floor (bare nats child)':36}{floor_med * 1000:10.1f}{floor_p90 * 1000:9.1f}")
    for name, times in starts.items():
        med, p90 = summary(times)
        rss, uss, pss = memory[name]
        label = f"rosey plugin, {name}"
        print(
            f"{label:36}{med * 1000:10.1f}{p90 * 1000:9.1f}{med / floor_med:7.2f}"
            f"  {rss:.1f} / {uss:.1f} / {pss:.1f}"
        )
    for layer_set in boots:
        forked, spawned = f"forked, {layer_set}", f"spawned, {layer_set}"
        ratio = summary(starts[forked])[0] / summary(starts[spawned])[0]
        uss = memory[forked][1] / memory[spawned][1]
        print(f"forked / spawned, {layer_set}: spawn→ready median {ratio:.2f}, idle USS {uss:.2f}")
    for name, each in own.items():
        print(f"idle USS per process MiB, {name}: {' / '.join(f'{u:.2f}' for u in each)}")
    for name, found in layers.items():
        print(f"layers, {name}: {', '.join(found) or 'none'}")


def plugin_processes(pid: int) -> list[psutil.Process]:
    """``pid``'s processes: the init of its PID namespace where that is its sibling (forked:
    init, the plugin), then ``pid`` and its descendants (spawned: the waiter, init, the
    plugin)."""
    root = psutil.Process(pid)
    init = namespace_init(pid)
    return [*([psutil.Process(init)] if init else []), root, *root.children(recursive=True)]


def tree_memory(pid: int) -> tuple[float, float, float]:
    """RSS, USS and PSS (MiB) summed over ``plugin_processes``."""
    rss = uss = pss = 0.0
    for proc in plugin_processes(pid):
        info = proc.memory_full_info()
        rss, uss, pss = rss + info.rss, uss + info.uss, pss + info.pss
    return rss / 2**20, uss / 2**20, pss / 2**20


def tree_uss(pid: int) -> list[float]:
    """USS (MiB) of each of ``plugin_processes``."""
    return [proc.memory_full_info().uss / 2**20 for proc in plugin_processes(pid)]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    asyncio.run(main(max(1, parser.parse_args().runs)))
