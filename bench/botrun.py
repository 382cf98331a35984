"""A real ``rosey run`` for the benches: started as operators start it, stopped by SIGTERM.

Shared by the benches that measure a whole bot (commands, reload, install, chat), so that each
starts, waits for and stops it the same way: no ``ROSEY_*`` variables leak in from the caller,
stdin is closed, and a bot that ignores SIGTERM is killed, never left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any


async def spawn_bot(
    root: Path,
    state: Path,
    plugins: Path,
    *extra: str,
    stderr: int | None = None,
) -> asyncio.subprocess.Process:
    """``rosey run --no-console --state-dir STATE --plugins-dir PLUGINS EXTRA...`` in ``root``
    (its log goes to this process's stderr unless ``stderr`` says otherwise)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROSEY_")}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rosey.cli", "run", "--no-console",
        "--state-dir", str(state), "--plugins-dir", str(plugins), *extra,
        cwd=root, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL, stderr=stderr,
    )  # fmt: skip


async def stop_bot(proc: asyncio.subprocess.Process, timeout: float = 30) -> None:
    """SIGTERM, then SIGKILL if the bot has not ended within ``timeout`` s."""
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            proc.kill()
    await proc.wait()


@contextlib.asynccontextmanager
async def running_bot(
    root: Path,
    plugins: Path,
    *extra: str,
    log_level: str = "WARNING",
    stderr: int | None = None,
) -> AsyncIterator[dict[str, Any]]:
    """A bot on ``plugins`` (state in ``root/state``); yields its ``runtime.json`` once up."""
    state = root / "state"
    proc = await spawn_bot(root, state, plugins, "--log-level", log_level, *extra, stderr=stderr)
    try:
        runtime = state / "runtime.json"
        deadline = time.monotonic() + 30
        while not runtime.exists():  # the bot writes it once everything is up
            if proc.returncode is not None or time.monotonic() > deadline:
                raise RuntimeError("the bot did not come up")
            await asyncio.sleep(0.05)
        yield json.loads(runtime.read_text())
    finally:
        await stop_bot(proc)
