"""Where the CPU of stopping N plugins goes (issue 13: "stop all ≤ 0.3 s", graceful).

    .venv/bin/python bench/stop.py [--n 100] [--runs 2] [--perf]

The stop row of bench/supervisors.py (SIGTERM to the bot → every plugin's processes gone) is
mostly CPU on a 2-core machine, and its wall clock moves with whatever else runs there. This
prints what does not: the CPU the stop costs, next to a floor measured in the same run.

- **rosey**: ``rosey run --no-console`` with N trivial plugins (those of bench/supervisors.py,
  forked from the fork server, on this bench's nats-server); once all are running, SIGTERM to
  the bot. Wall: SIGTERM → every plugin's processes gone (its outside pid, and the init of its
  namespace beside it), and → the bot's exit. CPU: the bot
  and every process below it until the bot has exited, its own exit included (a fixed ~0.1 s
  with one plugin): ``getrusage(RUSAGE_CHILDREN)`` once the bot is reaped, less what they had
  used before the SIGTERM; and the nats-server's.
- **floor**: N bare children (bench/supervisors.py's, nats connected) spawned by this process,
  then SIGTERM to each: wall until all are gone, and the CPU of their exits.
- ``--perf`` (root, ``perf`` installed): ``perf record -a`` over each Rosey stop, and the CPU
  between SIGTERM and all gone by role (the bot, each plugin's processes: the plugin and its
  namespace's init, and a waiter for a plainly spawned one; the nats-server; kernel workers;
  everything else on the machine), each with the share spent unmapping the process's memory at
  exit (``exit_mmap``).

Load averages are printed with every run: other work on the machine inflates the wall clock.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import nats
import psutil
from drivers import CHILD_SCRIPT, PROFILES, Rosey, alive
from nats.aio.client import Client
from nats.aio.msg import Msg

from rosey.bus.server import EmbeddedServer

TIMEOUT = 120.0
PERF_HZ = 1999


@dataclass
class Stop:
    """One measured stop."""

    load: str
    gone_s: float = 0.0  # SIGTERM → every pid gone
    exit_s: float | None = None  # SIGTERM → the bot exited (Rosey only)
    cpu_s: float = 0.0  # CPU of the stop: the stopped processes (and the bot)
    server_cpu_s: float = 0.0  # the nats-server's
    by_role: dict[str, tuple[float, float]] = field(default_factory=dict)  # ms, exit_mmap ms


def load() -> str:
    return "/".join(open("/proc/loadavg").read().split()[:3])


def cpu_of(proc: psutil.Process) -> float:
    """Its CPU so far (ns-exact: ``/proc/PID/task/*/schedstat``; ``/proc/PID/stat`` counts in
    10 ms ticks, an error a sum over 300 processes would multiply), with that of the children
    it reaped (in ticks: one figure per process)."""
    own = 0
    try:
        for task in os.listdir(f"/proc/{proc.pid}/task"):
            with open(f"/proc/{proc.pid}/task/{task}/schedstat") as fh:
                own += int(fh.read().split()[0])
        t = proc.cpu_times()
    except (OSError, ValueError, psutil.Error):
        return own / 1e9
    return own / 1e9 + t.children_user + t.children_system


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def wait_gone(pids: list[int]) -> float:
    """Poll /proc until none of ``pids`` runs (a zombie has stopped); the monotonic time then."""
    async with asyncio.timeout(TIMEOUT):
        while any(alive(pid) for pid in pids):  # noqa: ASYNC110 (another process's state)
            await asyncio.sleep(0.002)
    return time.monotonic()


def roles(bot: int, outside: set[int]) -> dict[int, str]:
    """Every process below the bot by role: each plugin (the outside pid when the fork server
    made its namespaces: pid 2 inside, no waiter), its namespace's init (pid 1 inside) and, for
    a plainly spawned plugin, its waiter (the outside pid, not in a namespace); other helpers
    (fork server, warden) by module."""
    found = {bot: "bot"}
    tree = psutil.Process(bot).children(recursive=True)
    parents = {}
    for proc in tree:
        try:
            parents[proc.pid] = proc.ppid()
        except psutil.Error:
            continue
    for pid, parent in parents.items():
        inner = inner_pid(pid)
        if pid in outside:
            found[pid] = "plugin" if inner == 2 else "waiter"
        elif inner == 1:
            found[pid] = "init"
        elif inner == 2 or parents.get(parent) in outside:
            found[pid] = "plugin"
        else:
            found[pid] = "helper"
    return found


def inner_pid(pid: int) -> int | None:
    """The process's pid in its innermost PID namespace (None: gone)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("NSpid:"):
                    return int(line.split()[-1])
    except (OSError, ValueError):
        return None
    return None


def perf_by_role(
    data: Path, role: dict[int, str], window: tuple[float, float]
) -> dict[str, tuple[float, float]]:
    """CPU ms per role in ``window`` (CLOCK_MONOTONIC), and the part of it in ``exit_mmap``."""
    text = subprocess.run(
        ["perf", "script", "-i", str(data), "-F", "comm,pid,time,ip,sym", "--ns"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    total: collections.Counter[str] = collections.Counter()
    unmap: collections.Counter[str] = collections.Counter()
    for block in text.split("\n\n"):
        lines = block.strip().splitlines()
        head = re.match(r"\s*(\S.*?)\s+(\d+)\s+([\d.]+):", lines[0]) if lines else None
        if head is None or not window[0] <= float(head[3]) < window[1]:
            continue
        comm, pid = head[1], int(head[2])
        who = role.get(pid)
        if who is None:
            who = (
                "nats-server"
                if comm == "nats-server"
                else "idle"
                if pid == 0
                else "kworker"
                if comm.startswith("kworker")
                else "other"
            )
        total[who] += 1
        if any(" exit_mmap" in line for line in lines[1:]):
            unmap[who] += 1
    ms = 1000 / PERF_HZ
    return {who: (n * ms, unmap[who] * ms) for who, n in total.most_common()}


async def rosey_stop(root: Path, url: str, server_pid: int, nc: Client, n: int, perf: bool) -> Stop:
    system = Rosey(root, n, url, PROFILES["fast"], nc)
    try:
        launched = await system.launch()
        await system.up.wait(
            lambda: all(system.up.since(x, launched) for x in system.names), TIMEOUT
        )
        await system.api_ready()
        outside = set((await system.pids()).values())
        await asyncio.sleep(2.0)  # let the start settle
        role = roles(system.pid, outside)
        before = sum(cpu_of(psutil.Process(pid)) for pid in role if psutil.pid_exists(pid))
        server = psutil.Process(server_pid)
        server_before = cpu_of(server)
        recorder: asyncio.subprocess.Process | None = None
        if perf:
            data = root / "perf.data"
            recorder = await asyncio.create_subprocess_exec(
                *("perf", "record", "-a", "-g", "-F", str(PERF_HZ), "-k", "CLOCK_MONOTONIC"),
                *("-o", str(data)),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            await asyncio.sleep(1.0)
        reaped_before = children_cpu()
        stop = Stop(load())
        started = time.monotonic()
        system.terminate()
        # Every process of every plugin: the outside pids and the inits beside them.
        gone = await wait_gone([*outside, *(pid for pid, who in role.items() if who == "init")])
        await system.wait_exit(TIMEOUT)
        stop.exit_s = time.monotonic() - started
        stop.gone_s = gone - started
        stop.cpu_s = children_cpu() - reaped_before - before
        stop.server_cpu_s = cpu_of(server) - server_before
        if recorder is not None:
            recorder.send_signal(signal.SIGINT)
            await recorder.wait()
            stop.by_role = perf_by_role(root / "perf.data", role, (started, gone))
        return stop
    finally:
        await system.close()


async def floor_stop(root: Path, url: str, nc: Client, n: int) -> Stop:
    script = root / "child.py"
    script.write_text(CHILD_SCRIPT)
    names = [f"bare{i}" for i in range(n)]
    up: set[str] = set()
    everyone = asyncio.Event()

    async def on_up(msg: Msg) -> None:
        up.add(msg.subject.rsplit(".", 1)[-1])
        if len(up) == n:
            everyone.set()

    subscription = await nc.subscribe("bench.up.*", cb=on_up)
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-I", str(script), name, url, stdin=asyncio.subprocess.DEVNULL
        )
        for name in names
    ]
    try:
        async with asyncio.timeout(TIMEOUT):
            await everyone.wait()
        await asyncio.sleep(1.0)
        before = sum(cpu_of(psutil.Process(p.pid)) for p in procs)
        reaped_before = children_cpu()
        stop = Stop(load())
        started = time.monotonic()
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        stop.gone_s = await wait_gone([p.pid for p in procs]) - started
        for proc in procs:
            await proc.wait()
        stop.cpu_s = children_cpu() - reaped_before - before
        return stop
    finally:
        await subscription.unsubscribe()
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


def report(n: int, floors: list[Stop], stops: list[Stop]) -> None:
    print(f"stop of {n} at once (python {sys.version.split()[0]}, {os.cpu_count()} cores)")
    for i, (bare, rosey) in enumerate(zip(floors, stops, strict=True), 1):
        print(
            f" run {i}: floor (load {bare.load}): {n} bare children, SIGTERM → all gone "
            f"{bare.gone_s:.3f} s; CPU {1000 * bare.cpu_s:.0f} ms ({1000 * bare.cpu_s / n:.2f} ea.)"
        )
        print(
            f"        rosey (load {rosey.load}): SIGTERM → all plugin processes gone "
            f"{rosey.gone_s:.3f} s ({rosey.gone_s / bare.gone_s:.1f} × the floor), bot exited "
            f"{rosey.exit_s or 0:.3f} s; CPU to the bot's exit {1000 * rosey.cpu_s:.0f} ms "
            f"({1000 * rosey.cpu_s / n:.2f} per plugin, its own exit included; "
            f"{rosey.cpu_s / bare.cpu_s:.1f} × the floor's), nats-server "
            f"{1000 * rosey.server_cpu_s:.0f} ms"
        )
        if rosey.by_role:
            roles = ", ".join(
                f"{who} {ms:.0f}" + (f" ({unmap:.0f})" if unmap else "")
                for who, (ms, unmap) in rosey.by_role.items()
            )
            print(f"        CPU SIGTERM → all gone by role, ms (in exit_mmap): {roles}")


async def main(args: argparse.Namespace) -> None:
    floors: list[Stop] = []
    stops: list[Stop] = []
    with tempfile.TemporaryDirectory(prefix="rosey-bench-stop-") as tmp:
        root = Path(tmp)
        async with EmbeddedServer(root / "nats") as server:
            nc = await nats.connect(server.url, connect_timeout=5)
            try:
                for run in range(args.runs):
                    floors.append(await floor_stop(root, server.url, nc, args.n))
                    folder = root / f"rosey-{run}"
                    folder.mkdir()
                    assert server.pid is not None
                    stops.append(
                        await rosey_stop(folder, server.url, server.pid, nc, args.n, args.perf)
                    )
                    print(f"  done: run {run + 1}", file=sys.stderr, flush=True)
            finally:
                await nc.close()
    report(args.n, floors, stops)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help="plugins, and bare children (100)")
    parser.add_argument("--runs", type=int, default=2, help="runs of each (2)")
    parser.add_argument("--perf", action="store_true", help="CPU by role with perf (root)")
    args = parser.parse_args()
    if args.n < 1 or args.runs < 1:
        parser.error("--n and --runs must be at least 1")
    if args.perf and shutil.which("perf") is None:
        parser.error("--perf needs perf on PATH")
    return args


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
