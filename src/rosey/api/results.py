"""The result shapes of the management actions (DESIGN 2.6) and how STATUS is gathered.

STATUS comes from ``PluginManager.get_plugin_status``; the shapes here document it for the
faces and for type checking. Every face gets two fields next to STATUS: ``limits`` (the
plugin's effective manifest limits, which resource use is shown against), ``layers`` (the
enforcement layers in force for its process, e.g. ``cgroup-v1``, ``rlimit``), ``started``
(``forked`` from the fork server or ``spawned``) and ``bounds``
(what the operator's bounds changed in the manifest: ``critical`` ignored, a limit capped).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NotRequired, TypedDict

from rosey.manager import status
from rosey.manager.status import Stats

__all__ = [
    "Limits",
    "ListResult",
    "LogsResult",
    "Stats",
    "Status",
    "all_status",
    "as_status",
    "plugin_status",
]

if TYPE_CHECKING:
    from rosey.manager.manager import PluginManager


class Limits(TypedDict):
    memory_mb: int
    cpu_percent: int
    max_processes: int
    open_files: int
    data_mb: int


class Status(status.Status):
    """STATUS (``rosey.manager.status.Status``) with what every face shows next to it."""

    #: ``plugin``, or ``connector`` for a ``connectors:`` instance (DESIGN 2.9).
    kind: NotRequired[str]
    layers: NotRequired[list[str]]
    #: How its current process was started: ``forked`` (from the fork server) or ``spawned``.
    started: NotRequired[str]
    violations: NotRequired[int]
    resources: NotRequired[dict[str, int]]
    limits: NotRequired[Limits]
    bounds: NotRequired[list[str]]


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
        status.setdefault("kind", supervisor.manifest.kind)
        status.setdefault("limits", supervisor.manifest.limits.model_dump())
        # What the operator's bounds changed in the manifest ("capped from X to Y ...").
        status.setdefault("bounds", list(manager.bounds.get(supervisor.name, ())))
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
        how = getattr(supervisor, "started_how", None)
        if how is not None:
            status.setdefault("started", str(how))
    return status  # type: ignore[return-value]
