"""Run ``rosey run`` as a real subprocess for end-to-end tests, and talk to it as a connector."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import nats
import psutil
from nats.aio.client import Client
from nats.aio.msg import Msg

import privilege

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_PLUGINS = REPO / "plugins"
FIXTURE_PLUGINS = REPO / "tests" / "fixtures" / "plugins"


class BotProcess:
    """A ``rosey run --no-console`` child process and a connector ("test" platform) to it."""

    def __init__(self, proc: asyncio.subprocess.Process, state_dir: Path, log: list[str]) -> None:
        self.proc = proc
        self.state_dir = state_dir
        self.log = log
        self.nc: Client | None = None
        self.runtime: dict[str, Any] = {}
        self._replies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._ids = 0

    @property
    def pid(self) -> int:
        return self.proc.pid

    def descendants(self) -> list[int]:
        try:
            return [p.pid for p in psutil.Process(self.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    async def connect(self) -> None:
        self.runtime = json.loads((self.state_dir / "runtime.json").read_text())
        self.nc = await nats.connect(
            self.runtime["nats_url"],
            user=self.runtime["user"],
            password=self.runtime["password"],
            connect_timeout=2,
            allow_reconnect=False,
        )

        async def on_reply(msg: Msg) -> None:
            await self._replies.put(json.loads(msg.data))

        await self.nc.subscribe("rosey.platform.test.send", cb=on_reply)
        await self.nc.flush()

    async def chat(self, text: str, *, user: str = "tester", timeout: float = 10.0) -> str:
        """Say ``text`` on the test platform; the bot's reply text."""
        assert self.nc is not None
        self._ids += 1
        message = {
            "id": f"t{self._ids}",
            "platform": "test",
            "channel": "room",
            "user": {"username": user, "rank": 0},
            "text": text,
            "timestamp": time.time(),
        }
        await self.nc.publish("rosey.events.message", json.dumps(message).encode())
        async with asyncio.timeout(timeout):
            while True:
                reply = await self._replies.get()
                if reply.get("in_reply_to") == message["id"]:
                    return str(reply["text"])

    async def manage(
        self, action: str, body: dict[str, Any] | None = None, timeout: float = 30
    ) -> dict[str, Any]:
        assert self.nc is not None
        data = b"" if body is None else json.dumps(body).encode()
        msg = await self.nc.request(f"rosey.manager.{action}", data, timeout=timeout)
        reply: dict[str, Any] = json.loads(msg.data)
        return reply

    async def wait_for_log(self, needle: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(needle in line for line in self.log):
            if self.proc.returncode is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"bot never logged {needle!r}; log:\n" + "\n".join(self.log[-40:])
                )
            await asyncio.sleep(0.02)

    async def terminate(self, timeout: float = 20.0) -> int:
        if self.nc is not None and not self.nc.is_closed:
            await self.nc.close()
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(timeout):
            return await self.proc.wait()


def cli_env() -> dict[str, str]:
    """This environment without ``ROSEY_*``: a CLI run finds the bot only as a test says."""
    return {k: v for k, v in os.environ.items() if not k.startswith("ROSEY_")}


async def run_process(
    *argv: str,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 60,
    stdin: int = asyncio.subprocess.DEVNULL,
    stdout: int = asyncio.subprocess.PIPE,
    stderr: int = asyncio.subprocess.PIPE,
) -> tuple[int, str, str]:
    """``ARGV`` as a subprocess: exit code, stdout, stderr (killed if it outlives ``timeout``).

    ``env`` defaults to :func:`cli_env`; ``stdin`` to nothing (or a file descriptor, e.g. a
    terminal). ``stderr=STDOUT`` merges the two (stderr comes back ""); a stream sent to a file
    descriptor instead of a pipe comes back "" too.
    """
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=cli_env() if env is None else dict(env),
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
    )
    try:
        async with asyncio.timeout(timeout):
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return (
        proc.returncode,
        (out or b"").decode("utf-8", "replace"),
        (err or b"").decode("utf-8", "replace"),
    )


async def run_rosey(
    *args: str,
    timeout: float = 60,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    stdin: int = asyncio.subprocess.DEVNULL,
    stdout: int = asyncio.subprocess.PIPE,
    stderr: int = asyncio.subprocess.PIPE,
) -> tuple[int, str, str]:
    """``python -m rosey.cli ARGS`` as a subprocess: exit code, stdout, stderr (killed if it
    outlives ``timeout``). ``env``: variables set on top of :func:`cli_env`; the streams as
    :func:`run_process` takes them."""
    return await run_process(
        sys.executable,
        "-m",
        "rosey.cli",
        *args,
        cwd=cwd,
        env={**cli_env(), **(env or {})},
        timeout=timeout,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
    )


async def _pump(stream: asyncio.StreamReader, log: list[str]) -> None:
    while line := await stream.readline():
        log.append(line.decode("utf-8", "replace").rstrip())


@contextlib.asynccontextmanager
async def run_bot(
    tmp_path: Path,
    *,
    plugins_dirs: Sequence[Path] = (EXAMPLE_PLUGINS,),
    config: str | None = None,
    extra_args: Sequence[str] = (),
    ready: bool = True,
    unprivileged: bool = False,
) -> AsyncIterator[BotProcess]:
    """Start the bot; yield it once it is up (connected as a test connector); always clean up.

    ``unprivileged``: run it as the system user ``rosey-test`` instead of root (see
    ``privilege.py``), as operators usually do.
    """
    state_dir = tmp_path / "state"
    user = None
    if unprivileged:
        user, state_dir = privilege.prepare(tmp_path)
    args = [sys.executable, "-m", "rosey.cli", "run", "--no-console", "--state-dir", str(state_dir)]
    for folder in plugins_dirs:
        args += ["--plugins-dir", str(folder)]
    if config is not None:
        config_path = tmp_path / "plugins.yaml"
        config_path.write_text(config)
        args += ["--config", str(config_path)]
    args += list(extra_args)
    env = cli_env()
    if user is not None:
        args = privilege.command_as(user, args)
        env["HOME"] = str(state_dir)
    proc = await asyncio.create_subprocess_exec(
        *args,
        cwd=tmp_path,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    log: list[str] = []
    assert proc.stderr is not None
    pump = asyncio.create_task(_pump(proc.stderr, log))
    bot = BotProcess(proc, state_dir, log)
    try:
        if ready:
            await bot.wait_for_log("rosey is up", timeout=30)
            await bot.connect()
        yield bot
    finally:
        if proc.returncode is None:
            with contextlib.suppress(TimeoutError):
                await bot.terminate()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        if bot.nc is not None and not bot.nc.is_closed:
            await bot.nc.close()
        await asyncio.wait([pump], timeout=5)
