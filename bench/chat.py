"""Chat round trip through the CyTube double: ``!roll 2d6`` said, how soon is the answer seen?

    .venv/bin/python bench/chat.py [--n 100] [--gap 0.15] [--burst 40] [--rounds 1]
                                   [--match-nice] [--smoke]

Everything on loopback in one process: the CyTube double (tests/cytube/double.py), a "human"
client, and a bot answering ``!roll`` in the channel. Five bots, one after the other:

- **floor**: a bare python-socketio client that answers the moment it sees the line (no
  pacing, no bus): the least any bot can do;
- **connector core**: Rosey's CyTube client (``rosey.connectors.cytube.client``) with an
  in-process sink that answers ``!roll`` by ``enqueue`` (splitting, pacing, delivery tracking;
  no bus, no plugin process);
- **shape**: the floor of Rosey's shape: three bare processes around a bare nats-server (no
  accounts, no JetStream): a python-socketio connector publishes each line, a core takes it and
  asks a plugin process (request/reply), then publishes the answer, which the connector says.
  The same four bus hops and four processes as Rosey with none of its work (checks, pacing,
  sandbox, SDK): what any bot built this way pays for the isolation;
- **shape2**: the same with the bare connector and core in one process (two bus hops: the
  request to the plugin and its reply), the least a bot with in-process connectors would pay;
- **rosey**: the real bot (``rosey run`` in a subprocess, embedded NATS) with a ``connectors:``
  entry for the double: the connector process → (bus) → the core's relay, which stamps the line
  and hands it to the router in the same process → (bus) → a plugin process (``!echo``,
  tests/fixtures/chat/echo) → (bus) → the router, which hands the reply to the relay in-process
  → (bus) → the connector → the server. Four bus hops, each a wake-up of another process (the
  broker's and the receiver's); the floor and the connector core run inside this process.

Latency is measured from the human's emit to the human seeing the answer; the human waits
``--gap`` s between lines (CyTube would drop a person's lines beyond 10 a second too). Then a
burst: ``--burst`` lines from the human at once (from several humans, so the server's limit on
*their* lines is not what is measured), and how many answers arrive: the bare bot answers as fast
as it can and loses lines to the server's flood limit; the connector paces them.

``--rounds R`` measures every bot R times, alternating (the latencies pooled), so that a change
in the machine's load falls on all of them alike. The load average is printed before and after:
on a shared machine other jobs compete for the CPU, and the multi-process paths (shape, rosey)
suffer from it more than the single-process floor (run it niced, ``nice -n -10``, to see less of
that; docs/BENCHMARKS.md says how the figures there were taken). Niceness does not reach Rosey's
connector and plugin, though: they run in the sandbox's cgroup, which competes with every other
process as one task of nice 0, while the floor and the bare shape each get the weight of the
bench's nice level. ``--match-nice`` (root) gives that cgroup the same weight, for a comparison
on equal terms (``match_nice``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import botrun
import socketio

from cytube.double import CytubeDouble
from cytube.human import Human
from rosey.bus.server import EmbeddedServer
from rosey.connectors.cytube.client import EVENTS_MESSAGE, CytubeClient
from rosey.connectors.cytube.policy import Backoff
from rosey.connectors.cytube.settings import CytubeSettings

CHAN = "bench"
BOT = "RollBot"
REPO = Path(__file__).resolve().parents[1]


def roll(text: str) -> str | None:
    """The bot's answer to ``!roll 2d6 #tag``, or None for other lines."""
    if not text.startswith("!roll"):
        return None
    tag = text.rsplit("#", 1)[-1]
    return f"rolled {random.randint(1, 6) + random.randint(1, 6)} #{tag}"


async def floor_bot(url: str, double: CytubeDouble) -> Callable[[], Awaitable[None]]:
    sio = socketio.AsyncClient(reconnection=False)

    async def on_chat(data: dict[str, Any]) -> None:
        answer = roll(data.get("msg", "")) if data.get("username") != BOT else None
        if answer is not None:
            await sio.emit("chatMsg", {"msg": answer, "meta": {}})

    sio.on("chatMsg", on_chat)
    joined = asyncio.Event()
    sio.on("rank", lambda rank: joined.set() if rank >= 0 else None)
    await sio.connect(url, transports=["websocket"])
    await sio.emit("joinChannel", {"name": CHAN})
    await sio.emit("login", {"name": BOT})
    await asyncio.wait_for(joined.wait(), 5)

    async def stop() -> None:
        await sio.disconnect()

    return stop


async def core_bot(url: str, double: CytubeDouble) -> Callable[[], Awaitable[None]]:
    client: CytubeClient

    class Sink:
        async def publish_event(self, subject: str, body: dict[str, Any]) -> None:
            answer = roll(body["text"]) if subject == EVENTS_MESSAGE else None
            if answer is not None:
                client.enqueue({"channel": CHAN, "text": answer, "in_reply_to": body["id"]})

    settings = CytubeSettings(server=url, channel=CHAN, username=BOT)
    client = CytubeClient(settings, Sink(), backoff=Backoff(throttle_refill=0.0))
    task = asyncio.create_task(client.run())
    await asyncio.wait_for(client.joined.wait(), 10)

    async def stop() -> None:
        await client.stop()
        await task

    return stop


#: The floor of Rosey's shape: three bare processes and a bare nats-server, nothing else. A
#: connector (python-socketio + nats-py) publishes each chat line; a core takes it, asks a
#: plugin (request/reply) and publishes the answer; the connector says it. The same four bus
#: hops as Rosey, none of its checks, pacing, sandbox or accounts.
BARE = r"""
import asyncio, json, random, sys
import nats


async def main(role, nats_url, url="", chan="", bot=""):
    nc = await nats.connect(nats_url)
    tasks = set()
    if role == "plugin":
        async def on_command(msg):
            tag = json.loads(msg.data)["text"].rsplit("#", 1)[-1]
            answer = f"rolled {random.randint(1, 6) + random.randint(1, 6)} #{tag}"
            await msg.respond(json.dumps({"ok": True, "text": answer}).encode())
        await nc.subscribe("floor.commands.roll", cb=on_command)
    elif role == "core":
        async def command(body):
            reply = await nc.request("floor.commands.roll", json.dumps(body).encode(), timeout=5)
            send = {"channel": body["channel"], "text": json.loads(reply.data)["text"]}
            await nc.publish("floor.send", json.dumps(send).encode())
        async def on_event(msg):
            body = json.loads(msg.data)
            if body["text"].startswith("!roll"):
                task = asyncio.create_task(command(body))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        await nc.subscribe("floor.events", cb=on_event)
    else:
        import socketio
        sio = socketio.AsyncClient(reconnection=False)
        async def on_chat(data):
            if data.get("username") != bot:
                user = {"username": data["username"]}
                line = {"channel": chan, "user": user, "text": data["msg"]}
                if role == "connector":
                    await nc.publish("floor.events", json.dumps(line).encode())
                elif line["text"].startswith("!roll"):  # connector and core in one process
                    reply = await nc.request("floor.commands.roll", json.dumps(line).encode())
                    await sio.emit("chatMsg", {"msg": json.loads(reply.data)["text"], "meta": {}})
        async def on_send(msg):
            await sio.emit("chatMsg", {"msg": json.loads(msg.data)["text"], "meta": {}})
        sio.on("chatMsg", on_chat)
        await nc.subscribe("floor.send", cb=on_send)
        await sio.connect(url, transports=["websocket"])
        await sio.emit("joinChannel", {"name": chan})
        await sio.emit("login", {"name": bot})
    await nc.flush()
    print("ready", flush=True)
    await asyncio.Event().wait()


asyncio.run(main(*sys.argv[1:]))
"""


async def shape_bot(
    url: str, double: CytubeDouble, roles: tuple[str, ...] = ("plugin", "core", "connector")
) -> Callable[[], Awaitable[None]]:
    """Rosey's shape, bare: connector, core and plugin processes around a nats-server."""
    folder = tempfile.TemporaryDirectory(prefix="rosey-bench-shape-")
    broker = EmbeddedServer(Path(folder.name) / "nats", jetstream=False)
    await broker.start()
    procs: list[asyncio.subprocess.Process] = []

    async def stop() -> None:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()
        await broker.stop()
        folder.cleanup()

    try:
        for role in roles:
            args = (url, CHAN, BOT) if role in ("connector", "connector+core") else ()
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", BARE, role, broker.url, *args,
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
            procs.append(proc)
            assert proc.stdout is not None
            if await asyncio.wait_for(proc.stdout.readline(), 30) != b"ready\n":
                raise RuntimeError(f"the bare {role} did not start")
        await double.wait_until(
            lambda: BOT in double.users(CHAN), 10, "the bare bot in the channel"
        )
    except BaseException:
        await stop()
        raise
    return stop


async def shape2_bot(url: str, double: CytubeDouble) -> Callable[[], Awaitable[None]]:
    """Two bus hops: the bare connector asks the bare plugin itself (connector and core in one
    process), what a bot whose connectors live in the core process would pay at least."""
    return await shape_bot(url, double, ("plugin", "connector+core"))


#: The kernel's CPU weight of a task per nice level (``sched_prio_to_weight``, nice -20..19).
NICE_WEIGHT = (
    88761, 71755, 56483, 46273, 36291, 29154, 23254, 18705, 14949, 11916,
    9548, 7620, 6100, 4904, 3906, 3121, 2501, 1991, 1586, 1277,
    1024, 820, 655, 526, 423, 335, 272, 215, 172, 137,
    110, 87, 70, 56, 45, 36, 29, 23, 18, 15,
)  # fmt: skip
#: ``--match-nice``: give the bot's plugin cgroup this process's CPU weight (set in ``main``).
MATCH_NICE: list[bool] = [False]


def match_nice(bot_pid: int) -> str:
    """Give the sandbox's cgroup of the bot ``bot_pid`` the CPU weight of our nice level.

    The connector and the plugins live in that group, which competes with the other processes
    as one task of nice 0 (``cpu.shares`` 1024, ``cpu.weight`` 100) whatever nice they inherit:
    under ``nice -n -10`` the floor and the bare shape get the weight 9548 each, Rosey's
    connector and plugin 1024 together. Returns what was done, in words (root only).
    """
    shares = NICE_WEIGHT[os.getpriority(os.PRIO_PROCESS, 0) + 20]
    done = []
    for group in Path("/sys/fs/cgroup").glob(f"**/rosey-*-{bot_pid}-*"):
        for name, value in (("cpu.shares", shares), ("cpu.weight", round(shares * 100 / 1024))):
            knob = group / name
            if knob.exists():
                knob.write_text(str(max(1, min(value, 262144 if name == "cpu.shares" else 10000))))
                done.append(f"{knob} = {knob.read_text().strip()}")
    return "; ".join(done) or "no cgroup of the bot found"


async def rosey_bot(url: str, double: CytubeDouble) -> Callable[[], Awaitable[None]]:
    """The real bot with one CyTube connector (a guest: the double has no account for it)."""
    folder = tempfile.TemporaryDirectory(prefix="rosey-bench-chat-")
    root = Path(folder.name)
    config = root / "plugins.yaml"
    config.write_text(
        "http: null\n"
        "connectors:\n"
        "  cytube:\n"
        "    type: cytube\n"
        f"    server: {url}\n"
        f"    channel: {CHAN}\n"
        f"    username: {BOT}\n"
    )
    proc = await botrun.spawn_bot(
        root,
        root / "state",
        REPO / "tests" / "fixtures" / "chat",
        "--config",
        str(config),
        stderr=asyncio.subprocess.DEVNULL,
    )

    async def stop() -> None:
        await botrun.stop_bot(proc)
        folder.cleanup()

    try:
        await double.wait_until(lambda: BOT in double.users(CHAN), 60, "the bot in the channel")
        if MATCH_NICE[0]:
            print(f"--match-nice: {match_nice(proc.pid)}", file=sys.stderr)
    except BaseException:
        await stop()
        raise
    return stop


async def answered(human: Human, tag: str, timeout: float, since: int) -> float | None:
    """When ``human`` saw the bot's answer tagged ``tag`` (monotonic), or None.

    Only the events from index ``since`` on are read, each once (the human's event list grows
    with every line: reading it whole at every event made the measuring process's CPU grow with
    the run, taking CPU from the bots it measures). The answer ends with ``#tag`` (exactly:
    ``#burst-1`` is not ``#burst-12``); the person's own line, echoed by the server, is not the
    bot's.
    """
    needle = f"#{tag}"
    found: list[float] = []
    cursor = since

    def seen() -> bool:
        nonlocal cursor
        events = human.events
        for name, data, stamp in events[cursor:]:
            if name == "chatMsg" and data.get("username") == BOT and data["msg"].endswith(needle):
                found.append(stamp)
                return True
        cursor = len(events)
        return False

    try:
        await human.wait_until(seen, timeout, f"answer {tag}")
    except AssertionError:
        return None
    return found[0]


async def measure(
    name: str,
    start_bot: Callable[[str, CytubeDouble], Awaitable[Callable[[], Awaitable[None]]]],
    n: int,
    gap: float,
    burst: int,
    command: str = "!roll 2d6",
) -> dict[str, Any]:
    async with CytubeDouble() as double:
        stop_bot = await start_bot(double.url, double)
        human = await Human(double.url).enter(CHAN, "alice")
        latencies: list[float] = []
        for i in range(n):
            mark = len(human.events)
            sent = time.monotonic()
            await human.say(f"{command} #{name}-{i}")
            seen = await answered(human, f"{name}-{i}", 5, mark)
            if seen is not None:
                latencies.append(seen - sent)
            await asyncio.sleep(gap)  # the person's own pace: the server limits them too
        # A burst from several people (4 × burst/4 lines: each under their own limit).
        await asyncio.sleep(2.5)  # let every limiter's burst come back
        crowd = [await Human(double.url).enter(CHAN, f"p{k}") for k in range(4)]
        mark = len(human.events)
        for i in range(burst):
            await crowd[i % 4].say(f"{command} #burst-{i}")
        got = 0
        for i in range(burst):
            if await answered(human, f"burst-{i}", 10 if got == i else 0.5, mark) is not None:
                got += 1
        for person in [human, *crowd]:
            await person.close()
        await stop_bot()
        cooldowns = sum(1 for who, _ in double.cooldowns if who == BOT)
    return {"latencies": latencies, "got": got, "burst": burst, "cooldowns": cooldowns}


def summary(name: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One row from one or more runs of a bot (latencies pooled, bursts added up)."""
    latencies = sorted(x for run in runs for x in run["latencies"])
    return {
        "bot": name,
        "n": len(latencies),
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
        "burst": f"{sum(r['got'] for r in runs)}/{sum(r['burst'] for r in runs)}",
        "bot_cooldowns": sum(r["cooldowns"] for r in runs),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--gap", type=float, default=0.15)
    parser.add_argument("--burst", type=int, default=40)
    parser.add_argument("--smoke", action="store_true", help="a few lines only")
    parser.add_argument(
        "--rounds", type=int, default=1, help="measure every bot this many times, alternating"
    )
    parser.add_argument(
        "--match-nice",
        action="store_true",
        help="give the bot's plugin cgroup the CPU weight of this process's nice level (root)",
    )
    args = parser.parse_args()
    MATCH_NICE[0] = args.match_nice
    n, burst = (5, 8) if args.smoke else (args.n, args.burst)
    print("load average at the start: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    nice = os.getpriority(os.PRIO_PROCESS, 0)
    print(
        f"nice {nice}: the bare bots' weight {NICE_WEIGHT[nice + 20]} each; Rosey's connector and "
        f"plugin {'the same, as a group' if args.match_nice else 'one nice-0 task, as a group'} "
        "(see --match-nice)"
    )
    bots: list[tuple[str, Any, str]] = [
        ("floor", floor_bot, "!roll 2d6"),
        ("core", core_bot, "!roll 2d6"),
        ("shape2", shape2_bot, "!roll 2d6"),
        ("shape", shape_bot, "!roll 2d6"),
        # !echo answers "rolled #tag": the same answer, through the bot and a plugin process.
        ("rosey", rosey_bot, "!echo rolled"),
    ]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in bots}
    for _ in range(max(1, args.rounds)):  # alternating: a change of load hits every bot
        for name, start, command in bots:
            runs[name].append(await measure(name, start, n, args.gap, burst, command=command))
    rows = [summary(name, runs[name]) for name, _, _ in bots]
    print(f"{'bot':<8} {'n':>5} {'p50 ms':>8} {'p99 ms':>8} {'burst':>8} {'cooldowns':>10}")
    for row in rows:
        print(
            f"{row['bot']:<8} {row['n']:>5} {row['p50_ms']:>8.2f} {row['p99_ms']:>8.2f} "
            f"{row['burst']:>8} {row['bot_cooldowns']:>10}"
        )
    print("load average at the end: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    floor, core, shape2, shape, rosey = rows
    print(f"core / floor at p50: {core['p50_ms'] / floor['p50_ms']:.2f}")
    print(f"shape2 / floor at p50: {shape2['p50_ms'] / floor['p50_ms']:.2f}")
    print(f"shape / floor at p50: {shape['p50_ms'] / floor['p50_ms']:.2f}")
    print(f"rosey / floor at p50: {rosey['p50_ms'] / floor['p50_ms']:.2f} (goal: at most 1.5)")
    print(f"rosey / shape at p50: {rosey['p50_ms'] / shape['p50_ms']:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
