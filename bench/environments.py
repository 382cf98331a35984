"""A plugin's own Python environment: what building it costs, and what it costs at each start.

    .venv/bin/python bench/environments.py [--runs 20] [--requirement six==1.16.0]

Builds (``rosey.sandbox.environments``, as ``rosey plugin validate`` does) with one small
requirement, in one run:

- cold: uv with an empty cache (the package is downloaded);
- cached, another key: the same package from the now warm cache, in a new environment
  (a requirement spelled so that its set, hence its key, differs);
- cached, same key: the environment is there already (what validate does the second time);
- pip, the fallback, with pip's own cache as it is on this machine.

Then spawn→ready of one trivial plugin, as ``rosey run`` spawns it (the sandbox's spawner,
every isolation layer), runs interleaved: without requirements (the default: forked from the
fork server), the same plain-spawned from the bot's interpreter, and in its own environment
(plain-spawned from the environment's interpreter: a fork server holds the bot's modules).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

from floor import summary
from plugin_start import every_layer, spawn_ready, trivial_bootstrap, write_trivial_plugin

from rosey.bus.server import EmbeddedServer
from rosey.sandbox.confine import open_sandbox
from rosey.sandbox.environments import EnvironmentStore
from rosey.sandbox.process import SpawnSpec


def timed_build(store: EnvironmentStore, requirements: list[str]) -> tuple[float, Path]:
    started = time.perf_counter()
    python = store.build(requirements)
    return time.perf_counter() - started, python


def builds(root: Path, requirement: str) -> tuple[dict[str, float], Path, Path]:
    """The build figures; the environment's interpreter and its folder."""
    os.environ["UV_CACHE_DIR"] = str(root / "uv-cache")  # empty: a cold build
    store = EnvironmentStore(root / "state" / "envs", tool="uv")
    figures: dict[str, float] = {}
    figures["uv, cold (empty cache)"], python = timed_build(store, [requirement])
    name = requirement.split("==", 1)[0]
    respelled = requirement.replace("==", ">=") + f",<={requirement.split('==', 1)[1]}"
    assert store.key([respelled]) != store.key([requirement]), (name, respelled)
    figures["uv, cached, another key"], _ = timed_build(store, [respelled])
    figures["uv, cached, same key (built)"], _ = timed_build(store, [requirement])
    pip = EnvironmentStore(root / "pip-envs", tool="pip")
    figures["pip (fallback), its own cache"], _ = timed_build(pip, [requirement])
    return figures, python, python.parent.parent


async def starts(
    root: Path, runs: int, env_python: Path, env: Path
) -> tuple[dict[str, list[float]], dict[str, list[str]]]:
    folder = write_trivial_plugin(root)
    data = root / "data" / "trivial"
    async with EmbeddedServer(root / "nats") as server, open_sandbox(root / "state") as sandbox:
        spawner = sandbox.spawner()

        def boot(extra_read: list[str]) -> dict[str, object]:
            bootstrap = trivial_bootstrap(folder, data, server.url)
            return every_layer(bootstrap, folder, data, server.port, extra_read)

        # (python, extra read): a spec naming an interpreter is always spawned plainly.
        variants: dict[str, tuple[str | None, list[str]]] = {
            "bot's env, fork server": (None, []),
            "bot's env, plain spawn": (sys.executable, []),
            "own env (plain spawn)": (str(env_python), [str(env)]),
        }
        times: dict[str, list[float]] = {name: [] for name in variants}
        layers: dict[str, list[str]] = {}
        for i in range(runs + 2):  # interleaved; the first two warm the page cache
            for name, (python, extra) in variants.items():
                spec = SpawnSpec(
                    name="trivial",
                    plugin_dir=folder,
                    data_dir=data,
                    log_path=root / "logs" / "trivial.log",
                    bootstrap=boot(extra),
                    python=python,
                )
                took, process = await spawn_ready(spawner, spec)
                if i >= 2:
                    times[name].append(took)
                layers[name] = list(process.layers)
                await process.stop(5)
    return times, layers


async def main(runs: int, requirement: str) -> None:
    with tempfile.TemporaryDirectory(prefix="rosey-bench-envs-") as tmp:
        root = Path(tmp)
        figures, env_python, env = await asyncio.to_thread(builds, root, requirement)
        times, layers = await starts(root, runs, env_python, env)
    python = sys.version.split()[0]
    print(f"environment build with one requirement ({requirement}; python {python})")
    for name, seconds in figures.items():
        print(f"  {name:34}{seconds * 1000:9.0f} ms")
    cold = figures["uv, cold (empty cache)"]
    warm = figures["uv, cached, another key"]
    print(f"  cached / cold: {warm / cold:.2f}")
    print(f"plugin spawn→ready over {runs} runs, every layer ({os.cpu_count()} cores)")
    print(f"  {'':30}{'median ms':>10}{'p90 ms':>9}{'ratio':>7}")
    base, _ = summary(times["bot's env, plain spawn"])
    for name, samples in times.items():
        med, p90 = summary(samples)
        print(f"  {name:30}{med * 1000:10.1f}{p90 * 1000:9.1f}{med / base:7.2f}")
    print("  (ratio: against the bot's env, plain spawn)")
    for name, found in layers.items():
        print(f"layers, {name}: {', '.join(found) or 'none'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--requirement", default="six==1.16.0")
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.requirement))
