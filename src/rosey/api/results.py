"""The result shapes of the management actions (DESIGN 2.6) and how STATUS is gathered.

STATUS comes from ``PluginManager.get_plugin_status``; the shapes here document it for the
faces and for type checking. Every face gets two fields next to STATUS: ``limits`` (the
plugin's effective manifest limits, which resource use is shown against) and ``layers`` (the
enforcement layers in force for its process, e.g. ``cgroup-v1``, ``rlimit``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NotRequired, TypedDict

if TYPE_CHECKING:
    from rosey.manager.manager import PluginManager


class Stats(TypedDict):
    running: bool
    pid: int | None
    cpu_percent: float
    memory_mb: float


class Limits(TypedDict):
    memory_mb: int
    cpu_percent: int
    max_processes: int
    open_files: int


class Status(TypedDict):
    """STATUS of DESIGN 2.6: everything about one plugin, and why it is in its state."""

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
    layers: NotRequired[list[str]]
    violations: NotRequired[int]
    resources: NotRequired[dict[str, int]]
    limits: NotRequired[Limits]


class ListResult(TypedDict):
    """``list``: every plugin's STATUS, by name."""

    plugins: list[Status]


class LogsResult(TypedDict):
    """``logs``: log lines, oldest first, and a cursor to ask for what comes after them."""

    plugin: str
    lines: list[str]
    cursor: str


def plugin_status(manager: PluginManager, name: str) -> Status:
    """STATUS of one plugin (``PluginNotFound`` if there is none), with limits and layers."""
    status: dict[str, Any] = dict(manager.get_plugin_status(name))
    return _with_extras(manager, status)


def all_status(manager: PluginManager) -> list[Status]:
    return [_with_extras(manager, dict(s)) for s in manager.get_all_status()]


def as_status(manager: PluginManager, status: dict[str, Any]) -> Status:
    """A STATUS the manager returned from a mutating call, with limits and layers."""
    return _with_extras(manager, dict(status))


def _with_extras(manager: PluginManager, status: dict[str, Any]) -> Status:
    # Limits and enforcement layers are not part of STATUS; read them from the plugin's
    # supervisor (the effective manifest, config overrides applied; the layers of its process).
    supervisor = manager.supervisors.get(str(status.get("name")))
    if supervisor is not None:
        status.setdefault("limits", supervisor.manifest.limits.model_dump())
        status.setdefault("violations", int(getattr(supervisor, "violations", 0)))
        sample = getattr(supervisor, "last_sample", None)
        if sample is not None and "resources" not in status:
            status["resources"] = {
                "processes": sample.processes,
                "threads": sample.threads,
                "open_files": sample.open_files,
            }
        layers = getattr(supervisor, "layers", None)
        if "layers" not in status and isinstance(layers, list):
            status["layers"] = [str(layer) for layer in layers]
    return status  # type: ignore[return-value]
