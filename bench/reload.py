"""Reload under load: commands lost, latency during reloads vs without, request→switched.

    .venv/bin/python bench/reload.py [--rate 2000] [--reloads 20] [--baseline-s 5] [--restarts 5]

A real ``rosey run`` subprocess (embedded nats-server, broker permissions on) with one trivial
plugin. A test-platform connector sends ``!echo N`` chat lines through the router at ``--rate``
per second, open loop, for the whole run. Phases, in one run: a baseline without reloads, then
``--reloads`` reloads one after the other (``rosey.manager.reload``; the plugin's code changes
on disk before each, so every reload really starts new code), then for contrast ``--restarts``
plain restarts (stop, then start). Per phase: commands sent, answered right, answered with an
error, lost (no answer within 10 s), p50/p99 latency; and each reload's time from request to
switched (its reply). Goal: 0 lost during reloads.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import botrun
import nats
from nats.aio.client import Client
from nats.aio.msg import Msg

MANIFEST = "name: echo\nversion: 1.0.0\nentrypoint: echo:Echo\ncommands: [echo]\n"
MODULE = (
    "from rosey.sdk import Plugin, command\n\n"
    "GENERATION = {generation}\n\n"
    "class Echo(Plugin):\n"
    "    @command('echo')\n"
    "    async def echo(self, ctx):\n"
    "        return ctx.arg_text\n"
)
#: How long a command may take before it counts as lost.
LOST_AFTER_S = 10.0


def percentile(samples: list[float], p: float) -> float:
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


@contextlib.asynccontextmanager
async def running_bot(root: Path) -> AsyncIterator[tuple[dict[str, Any], Path]]:
    plugin = root / "plugins" / "echo"
    plugin.mkdir(parents=True)
    (plugin / "plugin.yaml").write_text(MANIFEST)
    (plugin / "echo.py").write_text(MODULE.format(generation=0))
    config = root / "plugins.yaml"
    config.write_text("http: null\n")  # no HTTP face: nothing here uses it, no port to clash
    async with botrun.running_bot(root, root / "plugins", "--config", str(config)) as runtime:
        yield runtime, plugin


@dataclass
class Sent:
    at: float
    phase: str
    text: str
    answered_at: float | None = None
    answer: str | None = None


@dataclass
class Load:
    """Open-loop chat lines at a fixed rate; each matched to its reply by message id."""

    nc: Client
    rate: int
    phase: str = "baseline"
    sent: dict[str, Sent] = field(default_factory=dict)
    outstanding: int = 0
    #: Set once the sender stopped and every command sent has its answer.
    done: asyncio.Event = field(default_factory=asyncio.Event)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> None:
        async def on_reply(msg: Msg) -> None:
            body = json.loads(msg.data)
            entry = self.sent.get(str(body.get("in_reply_to")))
            if entry is not None and entry.answered_at is None:
                entry.answered_at = time.perf_counter()
                entry.answer = str(body.get("text"))
                self.outstanding -= 1
                if self._stop.is_set() and self.outstanding <= 0:
                    self.done.set()

        await self.nc.subscribe("rosey.platform.test.send", cb=on_reply)
        await self.nc.flush()

    async def run(self) -> None:
        tick = 0.005
        started = time.perf_counter()
        n = 0
        while not self._stop.is_set():
            due = int((time.perf_counter() - started) * self.rate)
            while n < due:
                n += 1
                message_id = str(n)
                text = f"!echo {n}"
                self.sent[message_id] = Sent(time.perf_counter(), self.phase, str(n))
                self.outstanding += 1
                body = {
                    "id": message_id, "platform": "test", "channel": "bench",
                    "user": {"username": "bench", "rank": 0}, "text": text, "timestamp": 0,
                }  # fmt: skip
                await self.nc.publish("rosey.events.message", json.dumps(body).encode())
            await asyncio.sleep(tick)

    def stop(self) -> None:
        self._stop.set()
        if self.outstanding <= 0:
            self.done.set()


async def change(plugin: Path, generation: int, nc: Client, action: str) -> float:
    """Change the plugin's code on disk, then ``action`` it; seconds from request to reply."""
    (plugin / "echo.py").write_text(MODULE.format(generation=generation))
    started = time.perf_counter()
    reply = await nc.request(
        f"rosey.manager.{action}", json.dumps({"plugin": "echo"}).encode(), timeout=60
    )
    took = time.perf_counter() - started
    body = json.loads(reply.data)
    if not body.get("ok"):
        raise RuntimeError(f"{action} failed: {body}")
    return took


async def main(rate: int, reloads: int, baseline_s: float, restarts: int) -> None:
    with tempfile.TemporaryDirectory(prefix="rosey-bench-") as tmp:
        async with running_bot(Path(tmp)) as (runtime, plugin):
            nc = await nats.connect(
                runtime["nats_url"], user=runtime["user"], password=runtime["password"]
            )
            try:
                load = Load(nc, rate)
                await load.start()
                sender = asyncio.create_task(load.run())
                await asyncio.sleep(1.0)  # warm up, then measure
                load.sent.clear()
                load.outstanding = 0
                await asyncio.sleep(baseline_s)
                load.phase = "reload"
                switched = []
                for i in range(reloads):
                    switched.append(await change(plugin, i + 1, nc, "reload"))
                    await asyncio.sleep(0.2)
                load.phase = "settle"  # what the router still holds is not the next phase's
                await asyncio.sleep(1.0)
                load.phase = "restart"
                restart_took = []
                for i in range(restarts):
                    restart_took.append(await change(plugin, reloads + i + 1, nc, "restart"))
                    await asyncio.sleep(0.2)
                load.phase = "tail"
                await asyncio.sleep(0.5)
                load.stop()
                await sender
                with contextlib.suppress(TimeoutError):  # what is still missing is lost
                    async with asyncio.timeout(LOST_AFTER_S):
                        await load.done.wait()
            finally:
                await nc.close()
    ms = 1000.0
    print(
        f"reload under load: {rate} commands/s through the router for the whole run, "
        f"{reloads} reloads, {restarts} restarts ({os.cpu_count()} cores)"
    )
    print(
        f"{'phase':10}{'sent':>8}{'ok':>8}{'errors':>8}{'lost':>6}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'max ms':>9}"
    )
    p99: dict[str, float] = {}
    for phase in ("baseline", "reload", "restart"):
        entries = [s for s in load.sent.values() if s.phase == phase]
        if not entries:
            continue
        answered = [s for s in entries if s.answered_at is not None]
        ok = [s for s in answered if s.answer == s.text]
        latency = [(s.answered_at or 0) - s.at for s in answered]
        p99[phase] = percentile(latency, 99)
        print(
            f"{phase:10}{len(entries):8}{len(ok):8}{len(answered) - len(ok):8}"
            f"{len(entries) - len(answered):6}{percentile(latency, 50) * ms:9.2f}"
            f"{p99[phase] * ms:9.2f}{max(latency, default=0) * ms:9.1f}"
        )
    errors = Counter(
        (s.phase, (s.answer or "")[:60])
        for s in load.sent.values()
        if s.answer not in (None, s.text) and s.phase in ("baseline", "reload", "restart")
    )
    for (phase, text), count in sorted(errors.items()):
        print(f"  {phase} errors ×{count}: {text}")
    if "reload" in p99 and "baseline" in p99:
        print(f"p99 during reloads / without: {p99['reload'] / p99['baseline']:.2f}")
    if switched:
        print(
            f"reload request → switched: p50 {statistics.median(switched) * ms:.0f} ms, "
            f"max {max(switched) * ms:.0f} ms (includes the probation, "
            "reload_probation_s default 1 s)"
        )
    if restart_took:
        print(f"restart request → ready: p50 {statistics.median(restart_took) * ms:.0f} ms")
    print("goal: 0 lost during reloads (errors count commands answered with an error)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=2000)
    parser.add_argument("--reloads", type=int, default=20)
    parser.add_argument("--baseline-s", type=float, default=5.0)
    parser.add_argument("--restarts", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(max(1, args.rate), max(0, args.reloads), args.baseline_s, args.restarts))
