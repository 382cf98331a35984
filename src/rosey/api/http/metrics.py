"""``GET /metrics``: Prometheus text (DESIGN 2.11), with the maintained client library.

Two sources:
- **status at scrape time**: each plugin's STATUS (state, restarts, memory, ...), the CPU
  seconds of its process tree (psutil), a health ping's round trip and the broker connection;
  turned into metric families by ``families`` (pure, unit-tested).
- **command outcomes** the router publishes on ``rosey.commands.<plugin>.result|error`` with
  ``duration_ms``: counted by ``CommandMetrics`` as they arrive.

Labels are bounded: ``plugin`` is only ever the name of a plugin the manager knows (an outcome
for any other name is dropped), ``state`` one of the seven states, ``outcome`` ``ok`` or
``error``. No text a user or a plugin chose ends up in a label.

prometheus_client and psutil are imported when metrics are first needed (a scrape, or the
first command outcome to count), not with the bot: an unscraped bot does not carry them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rosey.lifecycle.states import State

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import Metric

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Seconds a scrape waits for one plugin's health ping before it reports no latency.
PING_TIMEOUT_S = 1.0
#: Command durations: from a fast reply (1 ms) to the router's timeouts.
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
STATES = tuple(str(state) for state in State)


@dataclass(frozen=True)
class PluginSample:
    """What one scrape knows about one plugin (from STATUS, psutil and a ping)."""

    name: str
    kind: str
    state: str
    enabled: bool
    uptime_s: float
    restarts: int
    crashes: int
    memory_bytes: float
    cpu_seconds: float | None
    violations: int
    error_rate: float
    backoff_s: float | None
    ping_s: float | None


def sample_from_status(
    status: dict[str, Any], cpu_seconds: float | None, ping_s: float | None
) -> PluginSample:
    stats = status.get("stats") or {}
    return PluginSample(
        name=str(status["name"]),
        kind=str(status.get("kind", "plugin")),
        state=str(status["state"]),
        enabled=bool(status.get("enabled", True)),
        uptime_s=float(status.get("uptime_seconds") or 0.0),
        restarts=int(status.get("restart_count") or 0),
        crashes=int(status.get("crash_count") or 0),
        memory_bytes=float(stats.get("memory_mb") or 0.0) * 1024 * 1024,
        cpu_seconds=cpu_seconds,
        violations=int(status.get("violations") or 0),
        error_rate=float(status.get("error_rate") or 0.0),
        backoff_s=status.get("next_restart_in"),
        ping_s=ping_s,
    )


def families(
    plugins: Sequence[PluginSample], *, broker_connected: bool, event_clients: int
) -> list[Metric]:
    """The scrape-time metric families for ``plugins`` (pure: a table in, metrics out)."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    label = ["plugin"]
    up = GaugeMetricFamily("rosey_plugin_up", "1 when the plugin is running, else 0", labels=label)
    state = GaugeMetricFamily(
        "rosey_plugin_state", "1 for the plugin's current state", labels=["plugin", "state"]
    )
    enabled = GaugeMetricFamily("rosey_plugin_enabled", "1 unless disabled", labels=label)
    info = GaugeMetricFamily("rosey_plugin_info", "plugin or connector", labels=["plugin", "kind"])
    restarts = CounterMetricFamily(
        "rosey_plugin_restarts", "restarts (automatic and asked for)", labels=label
    )
    crashes = GaugeMetricFamily(
        "rosey_plugin_crashes", "crashes in the current crash window", labels=label
    )
    memory = GaugeMetricFamily(
        "rosey_plugin_memory_bytes", "resident memory of the process tree", labels=label
    )
    cpu = CounterMetricFamily(
        "rosey_plugin_cpu_seconds",
        "CPU time of the process tree (user + system; resets when the plugin restarts)",
        labels=label,
    )
    uptime = GaugeMetricFamily("rosey_plugin_uptime_seconds", "time since ready", labels=label)
    violations = CounterMetricFamily(
        "rosey_security_violations", "refused publishes/subscribes", labels=label
    )
    error_rate = GaugeMetricFamily(
        "rosey_plugin_error_rate", "share of failed commands in the window", labels=label
    )
    backoff = GaugeMetricFamily(
        "rosey_plugin_backoff_in_progress", "1 while waiting to restart after a crash", labels=label
    )
    backoff_s = GaugeMetricFamily(
        "rosey_plugin_backoff_seconds", "seconds until the next automatic restart", labels=label
    )
    ping = GaugeMetricFamily(
        "rosey_plugin_health_ping_seconds",
        "round trip of a health ping made by this scrape (absent: no answer)",
        labels=label,
    )
    for p in plugins:
        name = [p.name]
        up.add_metric(name, 1.0 if p.state == "running" else 0.0)
        for each in STATES:
            state.add_metric([p.name, each], 1.0 if p.state == each else 0.0)
        enabled.add_metric(name, 1.0 if p.enabled else 0.0)
        info.add_metric([p.name, p.kind if p.kind in ("plugin", "connector") else "plugin"], 1.0)
        restarts.add_metric(name, float(p.restarts))
        crashes.add_metric(name, float(p.crashes))
        memory.add_metric(name, p.memory_bytes)
        if p.cpu_seconds is not None:
            cpu.add_metric(name, p.cpu_seconds)
        uptime.add_metric(name, p.uptime_s)
        violations.add_metric(name, float(p.violations))
        error_rate.add_metric(name, p.error_rate)
        backoff.add_metric(name, 1.0 if p.backoff_s is not None else 0.0)
        backoff_s.add_metric(name, float(p.backoff_s or 0.0))
        if p.ping_s is not None:
            ping.add_metric(name, p.ping_s)
    broker = GaugeMetricFamily("rosey_broker_connected", "1 while the core's bus connection is up")
    broker.add_metric([], 1.0 if broker_connected else 0.0)
    clients = GaugeMetricFamily("rosey_http_event_clients", "open /api/events streams")
    clients.add_metric([], float(event_clients))
    return [up, state, enabled, info, restarts, crashes, memory, cpu, uptime, violations,
            error_rate, backoff, backoff_s, ping, broker, clients]  # fmt: skip


class CommandMetrics:
    """``rosey_commands_total{plugin,outcome}`` and ``rosey_command_duration_seconds{plugin}``."""

    def __init__(self, registry: CollectorRegistry, known: Callable[[str], bool]) -> None:
        from prometheus_client import Counter, Histogram

        self._known = known
        self.total = Counter(
            "rosey_commands", "chat commands answered", ["plugin", "outcome"], registry=registry
        )
        self.duration = Histogram(
            "rosey_command_duration_seconds",
            "time from dispatch to the plugin's answer",
            ["plugin"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )

    def observe(self, plugin: str, outcome: str, body: Any) -> bool:
        """Count one outcome from the router; False (dropped) for an unknown plugin or body."""
        if not self._known(plugin) or outcome not in ("ok", "error"):
            return False
        self.total.labels(plugin, outcome).inc()
        duration = body.get("duration_ms") if isinstance(body, dict) else None
        if isinstance(duration, int | float) and 0 <= duration < 1e9:
            self.duration.labels(plugin).observe(duration / 1000)
        return True


class _Snapshot:
    """Yields the families set for the scrape in progress (a prometheus_client collector)."""

    def __init__(self) -> None:
        self.current: list[Metric] = []

    def collect(self) -> Iterable[Metric]:
        return list(self.current)


class _Registry:
    """The registry and what is registered in it, built on first use."""

    def __init__(self, known: Callable[[str], bool]) -> None:
        from prometheus_client import CollectorRegistry

        self.registry = CollectorRegistry(auto_describe=False)
        self.commands = CommandMetrics(self.registry, known)
        self.snapshot = _Snapshot()
        self.registry.register(self.snapshot)  # duck-typed: a collector is what has collect()


class Metrics:
    """The face's registry: command metrics that accumulate, status families per scrape."""

    def __init__(self, known: Callable[[str], bool]) -> None:
        self._known = known
        self._built: _Registry | None = None
        self._lock = asyncio.Lock()

    def _registry(self) -> _Registry:
        if self._built is None:
            self._built = _Registry(self._known)
        return self._built

    @property
    def registry(self) -> CollectorRegistry:
        return self._registry().registry

    @property
    def commands(self) -> CommandMetrics:
        return self._registry().commands

    async def render(self, current: list[Metric]) -> bytes:
        """The text exposition with ``current`` as the scrape-time families."""
        from prometheus_client import generate_latest

        built = self._registry()
        async with self._lock:  # one scrape at a time uses the snapshot
            built.snapshot.current = current
            try:
                return generate_latest(built.registry)
            finally:
                built.snapshot.current = []


def tree_cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds of ``pid`` and its descendants (and their reaped children)."""
    if pid is None:
        return None
    import psutil

    try:
        root = psutil.Process(pid)
        members = [root, *root.children(recursive=True)]
    except psutil.Error:
        return None
    total = 0.0
    for proc in members:
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            total += times.user + times.system + times.children_user + times.children_system
    return total


async def ping_seconds(check: Callable[[], Any]) -> float | None:
    """The round trip of one health ping (``manager.health_check_plugin``), or None."""
    try:
        async with asyncio.timeout(PING_TIMEOUT_S):
            answer = await check()
    except TimeoutError:
        return None
    if not isinstance(answer, dict) or answer.get("ok") is False:
        return None
    latency = answer.get("latency_ms")
    return float(latency) / 1000 if isinstance(latency, int | float) else None
