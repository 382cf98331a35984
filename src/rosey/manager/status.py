"""STATUS of DESIGN 2.6: exactly its keys, built from one supervisor.

```
{name, version, state, enabled, critical, uptime_seconds, crash_count, restart_count,
 error_rate, dependencies, dependents, last_exit_code, last_error, next_restart_in,
 stats: {running, pid, cpu_percent, memory_mb}, permissions, enforced}
```
The faces (chat, CLI, NATS) may show more next to it; this dict is the contract.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, TypedDict

if TYPE_CHECKING:
    from rosey.manager.supervisor import PluginSupervisor


class Stats(TypedDict):
    running: bool
    pid: int | None
    cpu_percent: float
    memory_mb: float


class Status(TypedDict):
    """STATUS of DESIGN 2.6: everything about one plugin, and why it is in its state.

    The one definition: the key lists below, the faces' result types (``rosey.api.results``)
    and the HTTP schema derive from it.
    """

    name: str
    version: str
    state: str
    enabled: bool
    critical: bool
    uptime_seconds: float
    crash_count: int
    restart_count: int
    error_rate: float
    dependencies: list[str]
    dependents: list[str]
    last_exit_code: int | None
    last_error: str | None
    next_restart_in: float | None
    stats: Stats
    permissions: list[str]
    enforced: bool


#: The keys of STATUS, in the contract's order.
STATUS_KEYS: tuple[str, ...] = tuple(Status.__annotations__)
STATS_KEYS: tuple[str, ...] = tuple(Stats.__annotations__)


def build_status(
    supervisor: PluginSupervisor, *, dependents: Sequence[str], enforced: bool
) -> Status:
    """The STATUS of one plugin, now."""
    s = supervisor
    sample = s.resource_sample()
    pid = s.pid
    stats: Stats = {
        "running": pid is not None,
        "pid": pid,
        "cpu_percent": sample.cpu_percent if sample else 0.0,
        "memory_mb": sample.rss_mb if sample else 0.0,
    }
    next_restart = (
        None
        if s.next_restart_at is None
        else round(max(0.0, s.next_restart_at - time.monotonic()), 3)
    )
    return {
        "name": s.name,
        "version": s.manifest.version,
        "state": str(s.state),
        "enabled": s.enabled,
        "critical": s.manifest.critical,
        "uptime_seconds": round(s.uptime, 3),
        "crash_count": s.crash_count,
        "restart_count": s.restart_count,
        "error_rate": s.error_rate,
        "dependencies": list(s.manifest.dependencies),
        "dependents": sorted(dependents),
        "last_exit_code": s.last_exit_code,
        "last_error": s.last_error,
        "next_restart_in": next_restart,
        "stats": stats,
        "permissions": list(s.manifest.permissions),
        "enforced": enforced,
    }
