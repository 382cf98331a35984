"""Install, update, rollback, remove on a running bot: time taken, against doing it by hand.

    .venv/bin/python bench/install.py [--rounds 5]

A real ``rosey run`` subprocess (embedded nats-server, broker permissions on), one small
plugin (no requirements: environments are ``bench/environments.py``'s). Per round, over NATS
(``rosey.manager.<action>``, as the CLI sends them):

- ``by hand`` (the baseline): copy the folder into the plugins folder, ``rescan``, ``start``;
  then stop and delete it again;
- ``install`` of a ``.tar.gz`` (unpack, check, place, rescan with a broker reload, start);
- ``update`` to a new version from a ``.zip`` that adds a grant (swap, reload beside the old);
- ``rollback`` (swap back, reload);
- ``remove --purge``.

Each figure is request → reply, and for install/update/rollback also request → the first chat
answer from the expected version. Medians over the rounds; the ratio is install to by-hand.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import statistics
import tarfile
import tempfile
import time
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import botrun
import nats
from nats.aio.client import Client
from nats.aio.msg import Msg

MODULE = (
    "from rosey.sdk import Plugin, command\n\n"
    "class Greeter(Plugin):\n"
    "    @command('greet')\n"
    "    async def greet(self, ctx):\n"
    "        return '{version}'\n"
)


def write_plugin(folder: Path, version: str, grants: list[str]) -> Path:
    folder.mkdir(parents=True)
    (folder / "plugin.yaml").write_text(
        f"name: greeter\nversion: {version}\nentrypoint: greeter:Greeter\ncommands: [greet]\n"
        f"permissions: {json.dumps(grants)}\n"
    )
    (folder / "greeter.py").write_text(MODULE.format(version=version))
    return folder


def tar_of(folder: Path, out: Path) -> Path:
    with tarfile.open(out, "w:gz") as archive:
        archive.add(folder, arcname="greeter")
    return out


def zip_of(folder: Path, out: Path) -> Path:
    with zipfile.ZipFile(out, "w") as archive:
        for path in sorted(folder.iterdir()):
            archive.write(path, path.name)
    return out


@contextlib.asynccontextmanager
async def running_bot(root: Path, plugins: Path) -> AsyncIterator[Client]:
    async with botrun.running_bot(
        root, plugins, log_level="INFO", stderr=asyncio.subprocess.DEVNULL
    ) as runtime:
        nc = await nats.connect(
            runtime["nats_url"], user=runtime["user"], password=runtime["password"]
        )
        try:
            yield nc
        finally:
            await nc.close()


class Bench:
    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self.replies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.ids = 0

    async def start(self) -> None:
        async def on_reply(msg: Msg) -> None:
            await self.replies.put(json.loads(msg.data))

        await self.nc.subscribe("rosey.platform.bench.send", cb=on_reply)

    async def manage(self, action: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else b""
        msg = await self.nc.request(f"rosey.manager.{action}", data, timeout=120)
        reply: dict[str, Any] = json.loads(msg.data)
        if not reply["ok"]:
            raise RuntimeError(f"{action}: {reply['error']}")
        return reply

    async def answer(self) -> str:
        self.ids += 1
        message = {
            "id": f"b{self.ids}",
            "platform": "bench",
            "channel": "room",
            "user": {"username": "bench", "rank": 0},
            "text": "!greet",
            "timestamp": time.time(),
        }
        await self.nc.publish("rosey.events.message", json.dumps(message).encode())
        async with asyncio.timeout(30):
            while True:
                reply = await self.replies.get()
                if reply.get("in_reply_to") == message["id"]:
                    return str(reply["text"])

    async def until_answer(self, expected: str, started: float) -> float:
        while await self.answer() != expected:
            pass
        return time.perf_counter() - started

    async def timed(
        self, action: str, body: dict[str, Any] | None, expected: str | None
    ) -> tuple[float, float | None]:
        started = time.perf_counter()
        await self.manage(action, body)
        replied = time.perf_counter() - started
        answered = None if expected is None else await self.until_answer(expected, started)
        return replied, answered


async def main(rounds: int) -> None:
    with tempfile.TemporaryDirectory(prefix="rosey-bench-install-") as tmp:
        root = Path(tmp)
        plugins = root / "plugins"
        plugins.mkdir()
        v1 = write_plugin(root / "src" / "v1", "1.0.0", [])
        v2 = write_plugin(root / "src" / "v2", "2.0.0", ["chat.send"])
        tarball = tar_of(v1, root / "greeter-1.0.0.tar.gz")
        zipped = zip_of(v2, root / "greeter-2.0.0.zip")
        figures: dict[str, list[float]] = {}

        def note(name: str, value: float | None) -> None:
            if value is not None:
                figures.setdefault(name, []).append(value * 1000)

        async with running_bot(root, plugins) as nc:
            bench = Bench(nc)
            await bench.start()
            for _ in range(rounds):
                # By hand: copy, rescan, start.
                started = time.perf_counter()
                shutil.copytree(v1, plugins / "greeter")
                await bench.manage("rescan")
                await bench.manage("start", {"plugin": "greeter"})
                note("by hand: copy+rescan+start → reply", time.perf_counter() - started)
                note("by hand → first answer", await bench.until_answer("1.0.0", started))
                await bench.manage("stop", {"plugin": "greeter"})
                await bench.manage("remove", {"plugin": "greeter", "purge": True})
                # The actions.
                body = {"source": str(tarball), "yes": True}
                replied, answered = await bench.timed("install", body, "1.0.0")
                note("install .tar.gz → reply", replied)
                note("install → first answer", answered)
                body = {"plugin": "greeter", "source": str(zipped), "yes": True}
                replied, answered = await bench.timed("update", body, "2.0.0")
                note("update .zip (+grant, reload) → reply", replied)
                note("update → first answer from 2.0.0", answered)
                replied, answered = await bench.timed("rollback", {"plugin": "greeter"}, "1.0.0")
                note("rollback (reload) → reply", replied)
                note("rollback → first answer from 1.0.0", answered)
                replied, _ = await bench.timed("remove", {"plugin": "greeter", "purge": True}, None)
                note("remove --purge → reply", replied)
        print(f"install/update/rollback/remove on a running bot, {rounds} rounds (median ms)")
        for name, values in figures.items():
            print(f"  {name:42s} {statistics.median(values):8.1f}  (min {min(values):.1f})")
        ratio = statistics.median(figures["install → first answer"]) / statistics.median(
            figures["by hand → first answer"]
        )
        print(f"  install → first answer vs by hand: ×{ratio:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    asyncio.run(main(parser.parse_args().rounds))
