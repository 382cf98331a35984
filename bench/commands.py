"""The command path against the raw NATS floor, measured in one run.

    .venv/bin/python bench/commands.py [--requests 3000] [--in-flight 100]

Path measured: a chat line published on ``rosey.events.message`` → router → plugin
(``rosey.commands.<p>.execute``) → reply → router → ``rosey.platform.test.send`` → this
connector. The bot is a real ``rosey run`` subprocess (embedded nats-server, broker
permissions on) with one trivial plugin. The floor is nats-py request/reply to a responder in
another process on the same server. Prints p50/p99 with one in flight and throughput with
``--in-flight`` outstanding. Targets (issue "Benchmarks"): p50 ≤ 1.5 ms, p99 ≤ 3 ms,
≥ 5 000 commands/s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import botrun
import nats
from nats.aio.client import Client
from nats.aio.msg import Msg

TRIVIAL_MANIFEST = "name: echo\nversion: 1.0.0\nentrypoint: echo:Echo\ncommands: [echo]\n"
TRIVIAL_MODULE = (
    "from rosey.sdk import Plugin, command\n\n"
    "class Echo(Plugin):\n"
    "    @command('echo')\n"
    "    async def echo(self, ctx):\n"
    "        return ctx.arg_text\n"
)
RESPONDER = """
import asyncio, sys
import nats
async def main():
    nc = await nats.connect(sys.argv[1], user=sys.argv[2] or None, password=sys.argv[3] or None)
    async def echo(msg):
        await msg.respond(msg.data)
    await nc.subscribe("bench.floor", cb=echo)
    await nc.flush()
    print("ready", flush=True)
    await asyncio.sleep(3600)
asyncio.run(main())
"""


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


@contextlib.asynccontextmanager
async def running_bot(root: Path) -> AsyncIterator[dict[str, Any]]:
    plugin = root / "plugins" / "echo"
    plugin.mkdir(parents=True)
    (plugin / "plugin.yaml").write_text(TRIVIAL_MANIFEST)
    (plugin / "echo.py").write_text(TRIVIAL_MODULE)
    async with botrun.running_bot(root, root / "plugins") as runtime:
        yield runtime


class Connector:
    """A test-platform chat connector that matches replies to requests by message id."""

    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self.pending: dict[str, asyncio.Future[float]] = {}
        self.ids = 0

    async def start(self) -> None:
        async def on_reply(msg: Msg) -> None:
            body = json.loads(msg.data)
            future = self.pending.pop(body["in_reply_to"], None)
            if future is not None and not future.done():
                future.set_result(time.perf_counter())

        await self.nc.subscribe("rosey.platform.test.send", cb=on_reply)
        await self.nc.flush()

    async def command(self, text: str) -> float:
        self.ids += 1
        message_id = str(self.ids)
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.pending[message_id] = future
        body = {
            "id": message_id, "platform": "test", "channel": "bench",
            "user": {"username": "bench", "rank": 0}, "text": text, "timestamp": 0,
        }  # fmt: skip
        started = time.perf_counter()
        await self.nc.publish("rosey.events.message", json.dumps(body).encode())
        async with asyncio.timeout(10):
            return await future - started


async def latencies(call: Any, n: int) -> list[float]:
    samples = []
    for i in range(n):
        samples.append(await call(i))
    return samples


async def throughput(call: Any, n: int, window: int) -> float:
    slots = asyncio.Semaphore(window)

    async def one(i: int) -> None:
        async with slots:
            await call(i)

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    return n / (time.perf_counter() - started)


async def main(requests: int, window: int) -> None:
    with tempfile.TemporaryDirectory(prefix="rosey-bench-") as tmp:
        async with running_bot(Path(tmp)) as runtime:
            url, user, password = runtime["nats_url"], runtime["user"], runtime["password"]
            responder = await asyncio.create_subprocess_exec(
                sys.executable, "-c", RESPONDER, url, user or "", password or "",
                stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
            nc = await nats.connect(url, user=user, password=password)
            try:
                assert responder.stdout is not None
                await responder.stdout.readline()
                connector = Connector(nc)
                await connector.start()

                async def floor_call(i: int) -> float:
                    started = time.perf_counter()
                    await nc.request("bench.floor", b"x", timeout=10)
                    return time.perf_counter() - started

                async def rosey_call(i: int) -> float:
                    return await connector.command(f"!echo {i}")

                for call in (floor_call, rosey_call):  # warm up both paths
                    await latencies(call, 200)
                floor = await latencies(floor_call, requests)
                rosey = await latencies(rosey_call, requests)
                floor_rate = await throughput(floor_call, requests * 3, window)
                rosey_rate = await throughput(rosey_call, requests * 3, window)
            finally:
                await nc.close()
                responder.kill()
                await responder.wait()
    ms = 1000.0
    print(f"command path, {requests} sequential + {requests * 3} with {window} in flight "
          f"({os.cpu_count()} cores)")  # fmt: skip
    print(f"{'':28}{'p50 ms':>9}{'p99 ms':>9}{'cmds/s':>10}")
    for label, samples, rate in (
        ("nats request/reply floor", floor, floor_rate),
        ("rosey chat→plugin→chat", rosey, rosey_rate),
    ):
        print(
            f"{label:28}{statistics.median(samples) * ms:9.3f}"
            f"{percentile(samples, 99) * ms:9.3f}{rate:10.0f}"
        )
    print(
        f"ratios rosey/floor: p50 {statistics.median(rosey) / statistics.median(floor):.2f}, "
        f"p99 {percentile(rosey, 99) / percentile(floor, 99):.2f}, "
        f"throughput {rosey_rate / floor_rate:.2f}"
    )
    print("targets: p50 ≤ 1.5 ms, p99 ≤ 3 ms, ≥ 5000 commands/s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--in-flight", type=int, default=100)
    args = parser.parse_args()
    asyncio.run(main(max(10, args.requests), max(1, args.in_flight)))
