"""Helpers for the manager tests (this module holds no tests).

- :func:`write_plugin` generates a plugin folder around the ``mgr_behave`` fixture module with
  the name, dependencies, policy, health and ``config`` a test needs;
- :func:`running_manager` runs a real ``PluginManager`` on the test's real nats-server and,
  on the way out, shuts it down and checks that no plugin process it spawned is left;
- :class:`EventLog` records ``rosey.manager.events.>`` and waits on it with deadlines.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from helpers import wait_gone
from rosey.bus.client import EventBus, Message
from rosey.config import BackoffSettings, BotConfig
from rosey.manager.manager import PluginManager
from rosey.protocol import subjects, wire
from rosey.sandbox.forkspawner import ForkSpawner
from rosey.sandbox.process import PluginProcess, Spawner, SpawnSpec

BEHAVE = Path(__file__).resolve().parents[1] / "fixtures" / "plugins" / "mgr_behave" / "behave.py"

#: Restarts without waiting, a stable run after a minute: what most tests want.
FAST_BACKOFF = BackoffSettings(initial_s=0, factor=2, max_s=0.5, jitter=0, reset_after_s=60)
#: Health checks fast enough for a test, lenient enough for a loaded two-core machine.
QUIET_HEALTH = {"interval_s": 30, "timeout_s": 5, "failure_threshold": 3, "start_timeout_s": 20}


def write_plugin(
    root: Path,
    name: str,
    *,
    dependencies: Sequence[str] = (),
    restart_policy: str = "on-failure",
    critical: bool = False,
    commands: Sequence[str] = (),
    config: Mapping[str, Any] | None = None,
    health: Mapping[str, Any] | None = None,
    limits: Mapping[str, Any] | None = None,
    stop_timeout_s: float = 5,
) -> Path:
    """A plugin folder ``root/name`` running ``behave:Behave``."""
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(BEHAVE, folder / "behave.py")
    manifest: dict[str, Any] = {
        "name": name,
        "version": "1.0.0",
        "entrypoint": "behave:Behave",
        "commands": list(commands),
        "dependencies": list(dependencies),
        "restart_policy": restart_policy,
        "critical": critical,
        "health": {**QUIET_HEALTH, **(health or {})},
        "stop_timeout_s": stop_timeout_s,
        "config": dict(config or {}),
    }
    if limits:
        manifest["limits"] = dict(limits)
    (folder / "plugin.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    return folder


def make_config(plugins_dir: Path, state_dir: Path, **overrides: Any) -> BotConfig:
    """A bot config for tests: the generated plugins, a private state dir, fast backoff."""
    data: dict[str, Any] = {
        "plugins_dir": [plugins_dir],
        "state_dir": state_dir,
        "backoff": FAST_BACKOFF,
    }
    data.update(overrides)
    return BotConfig.model_validate(data)


class RecordingSpawner:
    """The bot's default spawn (forked from a fork server: ``rosey.sandbox.forkspawner``),
    remembering every pid it started (for the leftover check)."""

    def __init__(self, inner: Spawner | None = None) -> None:
        self.inner = inner or ForkSpawner()
        self.pids: list[int] = []

    def close(self) -> None:
        """Stop the fork server of the default spawn (a given spawner is its owner's)."""
        if isinstance(self.inner, ForkSpawner):
            self.inner.close()

    async def spawn(self, spec: SpawnSpec) -> PluginProcess:
        process = await self.inner.spawn(spec)
        self.pids.append(process.pid)
        return process


@dataclass
class EventLog:
    """Every ``rosey.manager.events.>`` message, in the order the manager published them."""

    events: list[dict[str, Any]] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def on_message(self, msg: Message) -> None:
        self.events.append(msg.json())
        self._changed.set()

    def of(self, plugin: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["plugin"] == plugin]

    def states(self, plugin: str) -> list[str]:
        return [e["state"] for e in self.of(plugin)]

    def index(self, plugin: str, state: str, after: int = 0) -> int:
        """Position in the log of the first ``plugin → state`` event at or after ``after``."""
        for i in range(after, len(self.events)):
            if self.events[i]["plugin"] == plugin and self.events[i]["state"] == state:
                return i
        raise LookupError(f"no {plugin} → {state} event after {after}: {self.events[after:]}")

    async def wait(
        self, plugin: str, state: str, *, after: int = 0, timeout: float = 20
    ) -> dict[str, Any]:
        """The first ``plugin → state`` event at or after position ``after`` (waiting for it)."""
        return await self.wait_for(
            lambda e: e["plugin"] == plugin and e["state"] == state, after=after, timeout=timeout
        )

    async def wait_for(
        self, match: Callable[[dict[str, Any]], bool], *, after: int = 0, timeout: float = 20
    ) -> dict[str, Any]:
        seen = after
        try:
            async with asyncio.timeout(timeout):
                while True:
                    for event in self.events[seen:]:
                        if match(event):
                            return event
                    seen = max(seen, len(self.events))
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(
                f"no matching event within {timeout:g} s; events since {after}: "
                f"{self.events[after:]}"
            ) from None


@dataclass
class Harness:
    manager: PluginManager
    events: EventLog
    client: EventBus
    spawner: RecordingSpawner

    async def command(self, plugin: str, name: str, *args: str, timeout: float = 10) -> Any:
        """Send ``name args`` straight to the plugin (no router); its reply body."""
        request: wire.CommandRequest = {
            "command": name,
            "args": list(args),
            "text": " ".join([f"!{name}", *args]),
            "user": {"username": "tester", "rank": 0},
            "channel": "room",
            "platform": "test",
            "correlation_id": uuid.uuid4().hex,
        }
        reply = await self.client.request(
            subjects.command_execute(plugin), request, timeout=timeout
        )
        return reply.json()

    def pid(self, plugin: str) -> int:
        pid = self.manager.get_plugin_status(plugin)["stats"]["pid"]
        assert isinstance(pid, int), self.manager.get_plugin_status(plugin)
        return pid


@contextlib.asynccontextmanager
async def running_manager(
    nats_url: str,
    config: BotConfig,
    *,
    spawner: Spawner | None = None,
    initialize: bool = True,
) -> AsyncIterator[Harness]:
    """A manager on ``nats_url``; always shut down, and no plugin process may be left."""
    bus = EventBus(nats_url, name="test-manager", inbox_prefix=subjects.MANAGER_INBOX_PREFIX)
    client = EventBus(nats_url, name="test-client")
    await bus.connect()
    await client.connect()
    recording = RecordingSpawner(spawner)
    owned = spawner is None
    events = EventLog()
    manager: PluginManager | None = None
    try:
        await client.subscribe(subjects.MANAGER_EVENTS_ALL, events.on_message)
        await client.flush()
        manager = PluginManager(config, nats_url=nats_url, bus=bus, spawner=recording)
        if initialize:
            await manager.initialize()
        yield Harness(manager, events, client, recording)
    finally:
        try:
            if manager is not None:
                async with asyncio.timeout(60):
                    await manager.shutdown()
        finally:
            if owned:
                recording.close()
            await client.close()
            await bus.close()
            left = await wait_gone(recording.pids, timeout=10)
            assert left == [], f"plugin processes left behind: {left}"


def elapsed_between(first: dict[str, Any], second: dict[str, Any]) -> float:
    return float(second["timestamp"]) - float(first["timestamp"])


def now() -> float:
    return time.time()
