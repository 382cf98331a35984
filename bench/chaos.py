"""Chaos soak: plugins SIGKILLed at random, the broker restarted (or the bot's link cut), commands
sent all along; at the end, what must hold is asserted and the counts are printed.

    .venv/bin/python bench/chaos.py [--minutes 5] [--plugins 20] [--disrupt restart|cut]
        [--disrupt-every 60] [--window 3] [--rate 50] [--seed 1]

The bot is a real ``rosey run --no-console`` on a nats-server this script runs (external mode).
Plugins ``p0..`` answer ``!p<i>`` with ``pong``; their restart policies cycle always,
on-failure, never. During ``--minutes``:

- every 100–500 ms a random running plugin is SIGKILLed (its pid from ``rosey.manager.list``,
  checked to be a descendant of the bot);
- every ``--disrupt-every`` s the nats-server is restarted on the same port (``restart``), or
  every connection of the bot and its plugins is cut at a TCP relay between them and the
  server (``cut``);
- a test-platform connector sends ``!p<random>`` ``--rate`` times a second;
- the bot's process tree is sampled every 200 ms (descendants, zombies).

**Recovery windows**: a plugin's from its kill (or any state event out of running/unhealthy)
until its next ``running`` event; everyone's from a disruption until ``--window`` s after the
server is back. A command is *outside* the windows when ``[sent, answered]`` (unanswered:
``[sent, sent + 1 s]``) meets none of its plugin's or everyone's windows; such a command must be
answered ``pong`` (answers are awaited up to 15 s).

Asserted at the end: the bot (manager) never died and answers; every always/on-failure plugin
is running (within 30 s of the chaos ending); no zombie child of the bot lived over 1 s and no
descendant survived the bot's clean stop; every command outside the windows was answered.
Exit status 1 when one of them fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import signal
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
import psutil
from drivers import free_port, poll
from nats.aio.client import Client
from nats.aio.msg import Msg

from rosey.bus.server import EmbeddedServer

POLICIES = ("always", "on-failure", "never")
MANIFEST = (
    "name: p{i}\nversion: 1.0.0\nentrypoint: chaos:Chaos\ncommands: [p{i}]\n"
    "restart_policy: {policy}\n"
)
MODULE = """\
from rosey.sdk import Plugin, command

class Chaos(Plugin):
    @command("p{i}")
    async def pong(self, ctx):
        return "pong"
"""
DEADLINE = 15.0  # seconds a command may take (the router gives a plugin 10 s)
#: An unanswered command is excused only by a window within this many seconds of sending it:
#: routing takes milliseconds, so a later kill or disruption cannot be why it got no answer.
GRACE = 1.0
UP = ("running", "unhealthy")


class Windows:
    """Intervals ``[start, end]`` (``end`` = inf while open) per plugin and for everyone."""

    def __init__(self) -> None:
        self.plugin: dict[str, list[list[float]]] = defaultdict(list)
        self.everyone: list[list[float]] = []

    @staticmethod
    def _open(intervals: list[list[float]], at: float) -> None:
        if not intervals or intervals[-1][1] != math.inf:
            intervals.append([at, math.inf])

    @staticmethod
    def _close(intervals: list[list[float]], at: float) -> None:
        if intervals and intervals[-1][1] == math.inf:
            intervals[-1][1] = max(at, intervals[-1][0])

    def open(self, plugin: str | None, at: float) -> None:
        self._open(self.everyone if plugin is None else self.plugin[plugin], at)

    def close(self, plugin: str | None, at: float) -> None:
        self._close(self.everyone if plugin is None else self.plugin[plugin], at)

    def is_open(self, plugin: str) -> bool:
        intervals = self.plugin[plugin]
        return bool(intervals) and intervals[-1][1] == math.inf

    def covers(self, plugin: str, start: float, end: float) -> bool:
        return any(a <= end and start <= b for a, b in [*self.plugin[plugin], *self.everyone])


@dataclass
class Sent:
    plugin: str
    at: float
    text: str | None = None
    answered: float = math.inf

    def span(self) -> tuple[float, float]:
        """While the command was in the bot's hands (unanswered: ``GRACE`` s after sending)."""
        return self.at, min(self.answered, self.at + GRACE)


@dataclass
class Soak:
    """What the chaos did and saw."""

    nc: Client
    bot: asyncio.subprocess.Process
    windows: Windows = field(default_factory=Windows)
    sent: dict[str, Sent] = field(default_factory=dict)
    pids: dict[str, int | None] = field(default_factory=dict)
    killed_pid: dict[str, int] = field(default_factory=dict)
    seen: dict[int, float] = field(default_factory=dict)  # descendant pid → create time
    zombie_since: dict[int, float] = field(default_factory=dict)
    max_zombie_age: float = 0.0
    kills: int = 0
    restarts: int = 0
    disruptions: int = 0
    chaos_from: float = math.inf

    async def subscribe(self) -> None:
        async def on_event(msg: Msg) -> None:
            body = json.loads(msg.data)
            name, state, at = body["plugin"], body["state"], float(body["timestamp"])
            if state == "running" and at >= self.chaos_from:
                self.restarts += 1
            if state in UP:
                self.windows.close(name, at)
            else:
                self.windows.open(name, at)

        async def on_reply(msg: Msg) -> None:
            body = json.loads(msg.data)
            sent = self.sent.get(body.get("in_reply_to") or "")
            if sent is not None and sent.text is None:
                sent.text, sent.answered = str(body["text"]), time.time()

        await self.nc.subscribe("rosey.manager.events.*", cb=on_event)
        await self.nc.subscribe("rosey.platform.test.send", cb=on_reply)
        await self.nc.flush()

    async def listing(self) -> list[dict[str, Any]]:
        reply = await self.nc.request("rosey.manager.list", b"", timeout=2)
        plugins: list[dict[str, Any]] = json.loads(reply.data)["result"]["plugins"]
        now = time.time()
        for p in plugins:
            name, pid = p["name"], p["stats"]["pid"]
            self.pids[name] = pid if p["state"] in UP else None
            back = pid is not None and pid != self.killed_pid.get(name)
            if p["state"] == "running" and back and self.windows.is_open(name):
                self.windows.close(name, now)  # its event was lost in a disruption
        return plugins

    async def send(self, i: int, plugin: str) -> None:
        message = {
            "id": str(i), "platform": "test", "channel": "chaos", "text": f"!{plugin}",
            "user": {"username": "chaos", "rank": 0}, "timestamp": time.time(),
        }  # fmt: skip
        self.sent[str(i)] = Sent(plugin, time.time())
        with contextlib.suppress(Exception):  # disconnected: the window covers it
            await self.nc.publish("rosey.events.message", json.dumps(message).encode())

    def descendants(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.bot.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def sample_tree(self) -> None:
        now = time.time()
        zombies = set()
        for p in self.descendants():
            with contextlib.suppress(psutil.NoSuchProcess):
                self.seen.setdefault(p.pid, p.create_time())
                if p.status() == psutil.STATUS_ZOMBIE:
                    zombies.add(p.pid)
                    since = self.zombie_since.setdefault(p.pid, now)
                    self.max_zombie_age = max(self.max_zombie_age, now - since)
        for pid in set(self.zombie_since) - zombies:
            del self.zombie_since[pid]


class Relay:
    """A TCP relay to the broker: cutting it drops every connection of the bot and its plugins."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = 0
        self.links: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._link, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _link(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.transport.abort()
            return
        self.links |= {writer, up_writer}

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self.links -= {writer, up_writer}

    def cut(self) -> None:
        for writer in list(self.links):
            writer.transport.abort()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self.cut()
            await self._server.wait_closed()


def write_plugins(root: Path, count: int) -> dict[str, str]:
    """Plugins ``p0..``; their restart policies by name."""
    policies = {}
    for i in range(count):
        policy = POLICIES[i % len(POLICIES)]
        folder = root / f"p{i}"
        folder.mkdir(parents=True)
        (folder / "plugin.yaml").write_text(MANIFEST.format(i=i, policy=policy))
        (folder / "chaos.py").write_text(MODULE.format(i=i))
        policies[f"p{i}"] = policy
    return policies


async def chaos(
    soak: Soak, args: argparse.Namespace, disrupt: Any, policies: dict[str, str]
) -> None:
    """Kills, disruptions, commands and tree samples until the time is up."""
    rng = random.Random(args.seed)
    end = time.monotonic() + args.minutes * 60
    names = sorted(policies)

    async def killer() -> None:
        while time.monotonic() < end:
            await asyncio.sleep(rng.uniform(0.1, 0.5))
            with contextlib.suppress(Exception):  # the broker may be restarting
                await soak.listing()
            running = [(n, pid) for n, pid in sorted(soak.pids.items()) if pid is not None]
            if not running:
                continue
            name, pid = rng.choice(running)
            if pid not in {p.pid for p in soak.descendants()}:
                continue  # kill only the bot's own processes
            soak.windows.open(name, time.time())
            soak.killed_pid[name], soak.pids[name] = pid, None
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                soak.kills += 1

    async def disruptor() -> None:
        while time.monotonic() + args.disrupt_every < end:
            await asyncio.sleep(args.disrupt_every)
            soak.windows.open(None, time.time())
            await disrupt()
            soak.windows.close(None, time.time() + args.window)
            soak.disruptions += 1

    async def sender() -> None:
        i = 0
        while time.monotonic() < end:
            i += 1
            await soak.send(i, rng.choice(names))
            await asyncio.sleep(1 / args.rate)

    async def watcher() -> None:
        while time.monotonic() < end:
            if soak.bot.returncode is not None:
                raise RuntimeError(f"the bot died (exit {soak.bot.returncode})")
            soak.sample_tree()
            await asyncio.sleep(0.2)

    async with asyncio.TaskGroup() as group:
        for job in (killer, disruptor, sender, watcher):
            group.create_task(job())


async def settle(soak: Soak, must_run: list[str]) -> tuple[dict[str, str], bool]:
    """Each plugin's state once every ``must_run`` one runs (30 s at most); whether the
    manager answered ``list`` then."""
    states: dict[str, str] = {}
    answered = False
    for _ in range(150):
        try:
            states = {p["name"]: p["state"] for p in await soak.listing()}
            answered = True
        except Exception:
            answered = False
        if answered and all(states.get(n) == "running" for n in must_run):
            break
        await asyncio.sleep(0.2)
    return states, answered


async def verdicts(soak: Soak, policies: dict[str, str]) -> tuple[list[tuple[str, bool]], str]:
    """Settle, stop the bot, and judge; the verdicts and a line of counts."""

    def excused(s: Sent) -> bool:
        return soak.windows.covers(s.plugin, *s.span())

    def waited(s: Sent) -> bool:
        """Answered, excused by a window (lost in a disruption or a kill), or past due."""
        return s.text is not None or s.at + DEADLINE < time.time() or excused(s)

    must_run = sorted(n for n, p in policies.items() if p != "never")
    states, answered_list = await settle(soak, must_run)
    alive_then = soak.bot.returncode is None
    not_running = [f"{n}: {states.get(n)}" for n in must_run if states.get(n) != "running"]
    with contextlib.suppress(TimeoutError):
        await poll(lambda: all(waited(s) for s in soak.sent.values()), DEADLINE, 0.1)
    soak.sample_tree()
    if soak.bot.returncode is None:
        soak.bot.send_signal(signal.SIGTERM)
    async with asyncio.timeout(30):
        code = await soak.bot.wait()
    with contextlib.suppress(TimeoutError):
        await poll(lambda: not any(same_process(*p) for p in soak.seen.items()), 10, 0.05)
    left = [pid for pid, created in soak.seen.items() if same_process(pid, created)]
    outside = [s for s in soak.sent.values() if not excused(s)]
    wrong = [s for s in outside if s.text != "pong"]
    results = [
        ("the manager never died and still answers", alive_then and answered_list),
        (
            f"every always/on-failure plugin ({len(must_run)}) is running"
            + (f"; not: {not_running}" if not_running else ""),
            not not_running,
        ),
        (f"the bot stopped cleanly (exit {code})", code == 0),
        (
            f"no orphan ({len(left)} of {len(soak.seen)} descendants left) and no zombie over 1 s "
            f"(oldest {soak.max_zombie_age:.1f} s)",
            not left and soak.max_zombie_age <= 1.0,
        ),
        (
            f"every command outside the recovery windows answered pong ({len(wrong)} of "
            f"{len(outside)} not"
            + (f": {[(s.plugin, s.text) for s in wrong[:3]]})" if wrong else ")"),
            not wrong,
        ),
    ]
    answered = [s for s in soak.sent.values() if s.text is not None]
    counts = (
        f"counts: kills {soak.kills}, restarts {soak.restarts}, broker disruptions "
        f"{soak.disruptions}, commands sent {len(soak.sent)}, answered {len(answered)} "
        f"(pong {sum(s.text == 'pong' for s in answered)}), failed (no answer) "
        f"{len(soak.sent) - len(answered)}, outside windows {len(outside)}"
    )
    return results, counts


def same_process(pid: int, created: float) -> bool:
    """``pid`` still runs and is the process first seen (not a reused pid)."""
    try:
        p = psutil.Process(pid)
        return p.create_time() == created and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def main(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="rosey-chaos-") as tmp:
        root = Path(tmp)
        policies = write_plugins(root / "plugins", args.plugins)
        server = EmbeddedServer(root / "nats", port=free_port())
        await server.start()
        relay = Relay(server.port)
        bot: asyncio.subprocess.Process | None = None
        soak: Soak | None = None
        try:
            await relay.start()

            async def restart() -> None:
                await server.stop()
                await server.start()

            async def cut() -> None:
                relay.cut()

            bot_url = server.url if args.disrupt == "restart" else f"nats://127.0.0.1:{relay.port}"
            config = {
                "plugins_dir": [str(root / "plugins")],
                "state_dir": str(root / "state"),
                "nats": {"url": bot_url},
                "max_crash_count": 1_000_000,  # killing is the point: never give up
                # Plugins killed every few seconds would otherwise sit in ever longer backoffs
                # (it only resets after 60 s up): keep them coming back so commands reach them.
                "backoff": {"initial_s": 0.1, "max_s": 1},
            }
            (root / "plugins.yaml").write_text(json.dumps(config))

            async def quiet(*_: Any) -> None:
                """The broker restarts on purpose: no tracebacks from nats-py's default."""

            nc = await nats.connect(
                server.url, connect_timeout=2, reconnect_time_wait=0.1,
                max_reconnect_attempts=-1, error_cb=quiet, disconnected_cb=quiet,
            )  # fmt: skip
            env = {k: v for k, v in os.environ.items() if not k.startswith("ROSEY_")}
            with (root / "bot.log").open("wb") as out:
                bot = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "rosey.cli", "run", "--no-console",
                    "--config", str(root / "plugins.yaml"),
                    cwd=root, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out,
                )  # fmt: skip
            soak = Soak(nc, bot)
            await soak.subscribe()
            await poll((root / "state" / "runtime.json").exists, 60, 0.05)
            soak.chaos_from = time.time()
            await chaos(soak, args, restart if args.disrupt == "restart" else cut, policies)
            results, counts = await verdicts(soak, policies)
        except BaseException:
            if (root / "bot.log").exists():
                print("\n".join((root / "bot.log").read_text().splitlines()[-30:]), file=sys.stderr)
            raise
        finally:
            if bot is not None and bot.returncode is None:
                bot.kill()
                await bot.wait()
            if soak is not None:
                for pid, created in soak.seen.items():  # only if a verdict failed
                    if same_process(pid, created):
                        os.kill(pid, signal.SIGKILL)
                await soak.nc.close()
            await relay.close()
            await server.stop()
    print(
        f"chaos soak: {args.minutes:g} min, {args.plugins} plugins, broker {args.disrupt} every "
        f"{args.disrupt_every:g} s, recovery window {args.window:g} s, {args.rate:g} commands/s "
        f"(python {sys.version.split()[0]}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f})"
    )
    for text, ok in results:
        print(f"  {'ok    ' if ok else 'FAILED'} {text}")
    print(counts)
    return 0 if all(ok for _, ok in results) else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--plugins", type=int, default=20)
    parser.add_argument("--disrupt", choices=["restart", "cut"], default="restart")
    parser.add_argument("--disrupt-every", type=float, default=60.0, help="seconds (60)")
    parser.add_argument("--window", type=float, default=3.0, help="seconds after a disruption (3)")
    parser.add_argument("--rate", type=float, default=50.0, help="commands per second (50)")
    parser.add_argument("--seed", type=int, default=1)
    sys.exit(asyncio.run(main(parser.parse_args())))
