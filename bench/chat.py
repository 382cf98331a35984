"""Chat round trip through the CyTube double: ``!roll 2d6`` said, how soon is the answer seen?

    .venv/bin/python bench/chat.py [--n 100] [--gap 0.15] [--burst 40] [--smoke]

Everything on loopback in one process: the CyTube double (tests/cytube/double.py), a "human"
client, and a bot answering ``!roll`` in the channel. Two bots, one after the other:

- **floor**: a bare python-socketio client that answers the moment it sees the line (no
  pacing, no bus): the least any bot can do;
- **connector core**: Rosey's CyTube client (``rosey.connectors.cytube.client``) with an
  in-process sink that answers ``!roll`` by ``enqueue`` (splitting, pacing, delivery tracking;
  no bus, no plugin process);
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

The load average is printed before and after: on a shared machine other jobs compete for the
CPU, and the multi-process path suffers from it more than the single-process floor (run it niced,
``nice -n -10``, to see less of that; docs/BENCHMARKS.md says how the figures there were taken).
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
    latencies.sort()
    return {
        "bot": name,
        "n": len(latencies),
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
        "burst": f"{got}/{burst}",
        "bot_cooldowns": cooldowns,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--gap", type=float, default=0.15)
    parser.add_argument("--burst", type=int, default=40)
    parser.add_argument("--smoke", action="store_true", help="a few lines only")
    args = parser.parse_args()
    n, burst = (5, 8) if args.smoke else (args.n, args.burst)
    print("load average at the start: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    rows = [
        await measure("floor", floor_bot, n, args.gap, burst),
        await measure("core", core_bot, n, args.gap, burst),
        # !echo answers "rolled #tag": the same answer, through the bot and a plugin process.
        await measure("rosey", rosey_bot, n, args.gap, burst, command="!echo rolled"),
    ]
    print(f"{'bot':<8} {'n':>5} {'p50 ms':>8} {'p99 ms':>8} {'burst':>8} {'cooldowns':>10}")
    for row in rows:
        print(
            f"{row['bot']:<8} {row['n']:>5} {row['p50_ms']:>8.2f} {row['p99_ms']:>8.2f} "
            f"{row['burst']:>8} {row['bot_cooldowns']:>10}"
        )
    print("load average at the end: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    floor, core, rosey = rows
    print(f"core / floor at p50: {core['p50_ms'] / floor['p50_ms']:.2f}")
    print(f"rosey / floor at p50: {rosey['p50_ms'] / floor['p50_ms']:.2f} (goal: at most 1.5)")


if __name__ == "__main__":
    asyncio.run(main())
