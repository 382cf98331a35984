"""Rosey's plugin manager next to supervisord and circus: the same N children, one run, one table.

    .venv/bin/python bench/supervisors.py [--n 20 100] [--kills 20] [--idle-seconds 30]
        [--profile fast|default] [--systems rosey,supervisord,circus]

Every system runs as its own process on this machine, started the way its operator starts it
(``rosey run --no-console``, ``supervisord -n``, ``circusd``) with its API on 127.0.0.1, and
supervises N trivial Python children that import nats, connect to one nats-server this bench
runs (Rosey in external-server mode, so all children talk to the same broker), announce
themselves and sleep. For Rosey the children are trivial plugins (announcing in ``on_start``).

Measured for each N and system (wall-clock timestamps throughout):

- **all up**: launch of the supervisor → the last child up *in the system's own terms*, read
  from the system's own record so that observing does not change it: Rosey, the ``running``
  state events (``rosey.manager.events.*``, i.e. ready after the readiness handshake);
  supervisord, the ``entered RUNNING state`` lines of its log (polling its XML-RPC API would
  wake its event loop and speed up its transitions); circus, the ``started`` time of every
  active process (``stats`` command).
- **all connected**: launch → the last child announced itself on NATS: the same
  "Python started, nats connected" event for all three, the fair comparison.
- **recovery**: SIGKILL of one child (round robin, ``--kills`` times, each after a random pause
  so kills do not fall in step with a periodic timer) → replacement up (own terms) and
  connected; median and p90.
- **idle**: the supervisor process's own CPU (% of one core) and RSS over ``--idle-seconds``
  with the largest N (Rosey with its default health pings and resource samples every 10 s);
  then each idle child's USS and PSS (``/proc/PID/smaps_rollup``, summed over the child's own
  processes: its tree, and the init of its PID namespace where that is not in it; a forked
  Rosey plugin is two processes, init and the plugin, a spawned one three, its namespace's
  waiter and init and the plugin), the mean over the children.
- **stop**: SIGTERM to the supervisor → every child gone (and every init of their namespaces).
- **orphans**: a fresh launch, then SIGKILL of the supervisor; its descendants still running 1 s
  later (they are killed by this bench afterwards). Counted apart: descendants still in the
  kernel's exit path then, their memory and files released, running nothing (``in_exit``): the
  init of a forked Rosey plugin's PID namespace, whose exit waits until the dead plugin (its
  sibling, the supervisor's child) is reaped by the machine's pid 1 (at once under systemd or
  tini; about once a second on some sandboxes).

Rosey runs twice: ``rosey`` forks its plugins from the preloaded fork server (the default),
``rosey-spawn`` starts each as a new interpreter (``runtime.fork_server: false``), like the
other supervisors do.

The **floor** is the same child spawned by this bench directly: once (median/p90 over
``--kills`` runs) and N at once (all connected). Targets (``targets()``; issue "Ten times
faster than any supervisor"), for each Rosey column: recovery ≤ 0.2 × the floor; all ready (first
spawn → last up) ≤ 0.35 × the floor of N at once and ≥ 2.5 × faster than supervisord and
circus; idle plugin USS ≤ 6 MiB; stop all ≤ 0.3 s; idle CPU ≤ 0.2 % of a core; manager RSS
≤ 40 MiB; 0 orphans. Settings per ``--profile`` are in ``PROFILES`` and docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import nats
import psutil
from drivers import (
    CHILD_SCRIPT,
    PROFILES,
    SYSTEMS,
    Board,
    Profile,
    System,
    alive,
    in_exit,
    namespace_init,
    poll,
)
from nats.aio.client import Client
from nats.aio.msg import Msg

from rosey.bus.server import EmbeddedServer

TIMEOUT = 120.0  # seconds for any one wait; a healthy run is far below


@dataclass
class Figures:
    """What one system (or the floor) scored for one N; None: not measured."""

    all_up: float | None = None
    spawn_to_all_up: float | None = None
    ideal_all: float | None = None  # floor only: N × single spawn ÷ cores
    all_connected: float | None = None
    recovery_up: list[float] = field(default_factory=list)
    recovery_connected: list[float] = field(default_factory=list)
    idle_cpu: float | None = None
    idle_rss: float | None = None
    child_uss: float | None = None  # MiB, mean over the idle children (each with its tree)
    child_pss: float | None = None
    stop: float | None = None
    orphans: int | None = None
    orphans_in_exit: int | None = None


class Announcements:
    """Every child says ``{"pid", "t"}`` on ``bench.up.<name>`` or ``rosey.plugins.<name>.up``."""

    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self.board = Board()

    async def start(self) -> None:
        async def on_up(msg: Msg) -> None:
            parts = msg.subject.split(".")
            name = parts[2]
            body = json.loads(msg.data)
            self.board.put(name, int(body["pid"]), float(body["t"]))

        await self.nc.subscribe("bench.up.*", cb=on_up)
        await self.nc.subscribe("rosey.plugins.*.up", cb=on_up)
        await self.nc.flush()


def since(board: Board, name: str, t: float, other_than: int = 0) -> Callable[[], bool]:
    """``name`` has an entry from ``t`` on (with a pid other than ``other_than``)."""
    return lambda: board.since(name, t) and board.pid(name) != other_than


def pid_of(board: Board, name: str) -> int:
    pid = board.pid(name)
    if pid is None:
        raise RuntimeError(f"no pid announced by {name}")
    return pid


def p90(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]


async def floor(root: Path, url: str, ann: Announcements, n: int, runs: int) -> Figures:
    """The bare child spawned by this process: ``runs`` times alone, then ``n`` at once."""
    script = root / "child.py"
    figures = Figures()

    async def spawn(name: str) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-I", str(script), name, url, stdin=asyncio.subprocess.DEVNULL
        )

    async def end(procs: list[asyncio.subprocess.Process]) -> None:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
        for proc in procs:
            await proc.wait()

    for i in range(runs + 1):
        name = f"floor{i}"
        started = time.time()
        proc = await spawn(name)
        try:
            await ann.board.wait(since(ann.board, name, started), TIMEOUT)
        finally:
            await end([proc])
        if i > 0:  # the first run warms the page cache
            figures.recovery_connected.append(ann.board.at(name) - started)
    names = [f"floorall{i}" for i in range(n)]
    started = time.time()
    procs: list[asyncio.subprocess.Process] = []
    try:
        for name in names:
            procs.append(await spawn(name))
        await ann.board.wait(lambda: all(ann.board.since(x, started) for x in names), TIMEOUT)
    finally:
        await end(procs)
    figures.all_connected = max(ann.board.at(x) for x in names) - started
    figures.spawn_to_all_up = figures.all_connected
    single = statistics.median(figures.recovery_connected)
    figures.ideal_all = n * single / (os.cpu_count() or 1)
    return figures


async def wait_gone(pids: list[int], timeout: float) -> float:
    """Poll /proc until none of ``pids`` runs; the wall time when that was seen."""
    await poll(lambda: not any(alive(pid) for pid in pids), timeout, 0.005)
    return time.time()


async def measure(system: System, ann: Announcements, kills: int, idle_seconds: float) -> Figures:
    """Launch, all up, ``kills`` recoveries, idle, stop; then a second launch for orphans."""
    names, figures, board = system.names, Figures(), ann.board
    launched = await system.launch()
    try:
        await board.wait(lambda: all(board.since(x, launched) for x in names), TIMEOUT)
        await system.observe({x: pid_of(board, x) for x in names})
        await system.up.wait(lambda: all(system.up.since(x, launched) for x in names), TIMEOUT)
        figures.all_connected = max(board.at(x) for x in names) - launched
        last_up = max(system.up.at(x) for x in names)
        figures.all_up = last_up - launched
        assert system.first_spawn is not None
        figures.spawn_to_all_up = last_up - system.first_spawn
        await system.api_ready()
        pids = await system.pids()
        rng = random.Random(len(names))  # the same pauses for every system
        for i in range(kills + 1):
            name = names[i % len(names)]
            old = pids[name]
            # A random pause, so kills do not fall in step with a system's periodic timers.
            await asyncio.sleep(rng.uniform(0, system.profile.kill_pause_s))
            killed = time.time()
            os.kill(old, signal.SIGKILL)
            await board.wait(since(board, name, killed, other_than=old), TIMEOUT)
            await system.observe({name: pid_of(board, name)})
            await system.up.wait(since(system.up, name, killed), TIMEOUT)
            pids[name] = pid_of(board, name)
            if i > 0:  # the first kill warms the page cache
                figures.recovery_connected.append(board.at(name) - killed)
                figures.recovery_up.append(system.up.at(name) - killed)
        if await system.pids() != pids:
            raise RuntimeError(f"{system.label}: the children it reports are not those announced")
        if idle_seconds > 0:
            await asyncio.sleep(2.0)  # let the last restart settle
            me = psutil.Process(system.pid)
            before, t0 = me.cpu_times(), time.monotonic()
            await asyncio.sleep(idle_seconds)
            after, t1 = me.cpu_times(), time.monotonic()
            used = (after.user - before.user) + (after.system - before.system)
            figures.idle_cpu = 100.0 * used / (t1 - t0)
            figures.idle_rss = me.memory_info().rss / 2**20
            figures.child_uss, figures.child_pss = child_memory(list(pids.values()))
        children = list(pids.values())
        children += [init for pid in children if (init := namespace_init(pid)) is not None]
        stopping = time.time()
        system.terminate()
        figures.stop = await wait_gone(children, TIMEOUT) - stopping
        await system.wait_exit(TIMEOUT)
    finally:
        await system.kill_all()
    figures.orphans, figures.orphans_in_exit = await orphans(system, ann)
    return figures


def child_memory(pids: list[int]) -> tuple[float | None, float | None]:
    """Mean USS and PSS (MiB) of the children, each summed over its own processes (its tree,
    and its namespace's init where that is its sibling: ``namespace_init``)."""
    uss: list[float] = []
    pss: list[float] = []
    for pid in pids:
        try:
            root = psutil.Process(pid)
            tree = [root, *root.children(recursive=True)]
            if (init := namespace_init(pid)) is not None:
                tree.append(psutil.Process(init))
        except psutil.Error:
            continue
        u = p = 0.0
        for proc in tree:
            with contextlib.suppress(psutil.Error):
                info = proc.memory_full_info()
                u += info.uss
                p += info.pss
        uss.append(u / 2**20)
        pss.append(p / 2**20)
    if not uss:
        return None, None
    return statistics.mean(uss), statistics.mean(pss)


async def orphans(system: System, ann: Announcements) -> tuple[int, int]:
    """Launch again, SIGKILL the supervisor; its descendants running 1 s later, and those
    still in the kernel's exit path then (``in_exit``)."""
    board, names = ann.board, system.names
    launched = await system.launch()
    descendants: list[psutil.Process] = []
    try:
        await board.wait(lambda: all(board.since(x, launched) for x in names), TIMEOUT)
        await system.api_ready()
        descendants = psutil.Process(system.pid).children(recursive=True)
        await system.kill()
        await asyncio.sleep(1.0)  # the measure is "alive 1 s after", by definition
        still = [p.pid for p in descendants if alive(p.pid)]
        exiting = [pid for pid in still if in_exit(pid)]
        return len(still) - len(exiting), len(exiting)
    finally:
        await system.kill_all()
        for p in descendants:  # ours: descendants of a process this bench started
            with contextlib.suppress(psutil.NoSuchProcess):
                # Rosey's warden is the cleanup being measured: it unmounts the data folders
                # and ends by itself; killed here, it would leave those mounts behind.
                if p.is_running() and not is_warden(p):
                    p.kill()
        await wait_gone([p.pid for p in descendants], 30)


def is_warden(proc: psutil.Process) -> bool:
    with contextlib.suppress(psutil.Error):
        return "rosey.sandbox.warden" in " ".join(proc.cmdline())
    return False


Metric = tuple[str, Callable[[Figures], float | None], str]
METRICS: list[Metric] = [
    ("all up (own terms)", lambda f: f.all_up, "s"),
    ("all up, first spawn → last up", lambda f: f.spawn_to_all_up, "s"),
    ("  ideal: N × single ÷ cores", lambda f: f.ideal_all, "s"),
    ("all connected to NATS", lambda f: f.all_connected, "s"),
    (
        "recovery up, median",
        lambda f: statistics.median(f.recovery_up) if f.recovery_up else None,
        "ms",
    ),
    ("recovery up, p90", lambda f: p90(f.recovery_up) if f.recovery_up else None, "ms"),
    (
        "recovery connected, median",
        lambda f: statistics.median(f.recovery_connected) if f.recovery_connected else None,
        "ms",
    ),
    (
        "recovery connected, p90",
        lambda f: p90(f.recovery_connected) if f.recovery_connected else None,
        "ms",
    ),
    ("idle CPU, % of a core", lambda f: f.idle_cpu, "%"),
    ("idle RSS", lambda f: f.idle_rss, "MiB"),
    ("idle child USS, mean", lambda f: f.child_uss, "MiB"),
    ("idle child PSS, mean", lambda f: f.child_pss, "MiB"),
    ("stop all (SIGTERM → gone)", lambda f: f.stop, "s"),
    ("alive 1 s after SIGKILL", lambda f: None if f.orphans is None else float(f.orphans), "n"),
    (
        "  in exit then (no memory)",
        lambda f: None if f.orphans_in_exit is None else float(f.orphans_in_exit),
        "n",
    ),
]


SHORT = {"supervisord": "supd", "rosey-spawn": "spawn"}
ROSEYS = ("rosey", "rosey-spawn")


def cell(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "ms":
        return f"{value * 1000:.1f}"
    if unit == "s":
        return f"{value:.2f}"
    if unit == "n":
        return f"{value:.0f}"
    return f"{value:.2f}" if unit == "%" else f"{value:.1f}"


def ratio(a: float | None, b: float | None, unit: str) -> str:
    if a is None or b is None or unit == "n":
        return "—"
    return f"{a / b:.2f}" if b > 0 else "—"


def report(results: dict[int, dict[str, Figures]], systems: list[str], profile: Profile) -> None:
    cores = os.cpu_count()
    print(
        f"supervisors side by side, profile {profile.name!r} (python {sys.version.split()[0]}, "
        f"{cores} cores, load {'/'.join(f'{x:.1f}' for x in os.getloadavg())}; times from "
        "launch/kill to the event, wall clock)"
    )
    roseys = [s for s in ROSEYS if s in systems]
    # Ratio columns: each Rosey against the other systems (the fork server also against spawn).
    pairs = [(r, s) for r in roseys for s in systems if s not in ROSEYS or (r, s) == ROSEYS]
    head = f"{'N':>4} {'metric':30}{'unit':>5}{'floor':>9}" + "".join(f"{s:>12}" for s in systems)
    head += "".join(f"{short(r) + '/' + short(s):>14}" for r, s in pairs)
    print(head)
    for n, by_system in results.items():
        for label, get, unit in METRICS:
            values = {s: get(by_system[s]) for s in [*systems, "floor"] if s in by_system}
            row = f"{n:>4} {label:30}{unit:>5}{cell(values.get('floor'), unit):>9}"
            row += "".join(f"{cell(values.get(s), unit):>12}" for s in systems)
            row += "".join(f"{ratio(values.get(r), values.get(s), unit):>14}" for r, s in pairs)
            print(row)
    if not roseys:
        return
    print("targets for rosey:")
    for n, by_system in results.items():
        for label in roseys:
            lines = targets(by_system[label], by_system)
            print(f"  N={n} {label}: " + "; ".join(lines), flush=True)


def short(system: str) -> str:
    return SHORT.get(system, system)


def targets(rosey: Figures, by_system: dict[str, Figures]) -> list[str]:
    """Each goal of ``rosey``'s figures, with its verdict (see the module notes)."""
    base = by_system["floor"]
    rec = statistics.median(rosey.recovery_up) / statistics.median(base.recovery_connected)
    assert rosey.spawn_to_all_up is not None
    assert base.all_connected is not None
    start = rosey.spawn_to_all_up / base.all_connected
    lines = [
        f"recovery→ready {rec:.2f} × floor (≤ 0.2: {verdict(rec <= 0.2)})",
        f"all ready {start:.2f} × floor of N at once (≤ 0.35: {verdict(start <= 0.35)})",
    ]
    for other in ("supervisord", "circus"):
        theirs = by_system.get(other)
        if theirs is not None and theirs.spawn_to_all_up:
            ahead = theirs.spawn_to_all_up / rosey.spawn_to_all_up
            lines.append(f"{ahead:.1f} × faster than {other} (≥ 2.5: {verdict(ahead >= 2.5)})")
    if rosey.child_uss is not None:
        lines.append(f"plugin USS {rosey.child_uss:.1f} MiB (≤ 6: {verdict(rosey.child_uss <= 6)})")
    if rosey.stop is not None:
        lines.append(f"stop all {rosey.stop:.2f} s (≤ 0.3: {verdict(rosey.stop <= 0.3)})")
    if rosey.idle_cpu is not None:
        lines.append(f"idle CPU {rosey.idle_cpu:.2f} % (≤ 0.2 %: {verdict(rosey.idle_cpu <= 0.2)})")
    if rosey.idle_rss is not None:
        lines.append(f"RSS {rosey.idle_rss:.0f} MiB (≤ 40: {verdict(rosey.idle_rss <= 40)})")
    lines.append(
        f"orphans {rosey.orphans} (0: {verdict(rosey.orphans == 0)}; "
        f"{rosey.orphans_in_exit} more in exit)"
    )
    return lines


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


async def main(args: argparse.Namespace) -> None:
    profile = PROFILES[args.profile]
    systems: list[str] = args.systems
    results: dict[int, dict[str, Figures]] = {}
    with tempfile.TemporaryDirectory(prefix="rosey-bench-") as tmp:
        root = Path(tmp)
        (root / "child.py").write_text(CHILD_SCRIPT)
        async with EmbeddedServer(root / "nats") as server:
            nc = await nats.connect(server.url, connect_timeout=5)
            try:
                ann = Announcements(nc)
                await ann.start()
                for n in args.n:
                    by_system = results[n] = {}
                    by_system["floor"] = await floor(root, server.url, ann, n, args.kills)
                    idle = args.idle_seconds if n == max(args.n) else 0.0
                    for label in systems:
                        folder = root / f"{label}-{n}"
                        folder.mkdir()
                        system = SYSTEMS[label](folder, n, server.url, profile, nc)
                        try:
                            by_system[label] = await measure(system, ann, args.kills, idle)
                        finally:
                            await system.close()
                        print(f"  done: {label}, N={n}", file=sys.stderr, flush=True)
            finally:
                await nc.close()
    report(results, systems, profile)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[20, 100], help="children (20 100)")
    parser.add_argument("--kills", type=int, default=20, help="SIGKILLs timed per system (20)")
    parser.add_argument(
        "--idle-seconds", type=float, default=30.0, help="idle window, largest N only (30)"
    )
    parser.add_argument("--profile", choices=sorted(PROFILES), default="fast")
    parser.add_argument(
        "--systems",
        type=lambda text: [s for s in text.split(",") if s],
        default=list(SYSTEMS),
        help="comma-separated subset of " + ",".join(SYSTEMS),
    )
    args = parser.parse_args()
    unknown = set(args.systems) - set(SYSTEMS)
    if unknown or any(n < 1 for n in args.n) or args.kills < 1:
        parser.error(f"bad --systems {sorted(unknown)} or --n/--kills below 1")
    return args


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
