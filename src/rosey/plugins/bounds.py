"""Operator bounds on the powers a manifest asks for itself (DESIGN 2.3), pure.

A manifest is written by the plugin's author, whom the operator does not have to trust. What
in it gives a plugin power over the bot takes effect only within the operator's bounds:

- ``critical: true`` (the bot stops when the plugin ends disabled) only when the operator's
  ``plugins.<name>`` entry says ``critical: true`` too; else a plugin could stop the bot by
  crash-looping. The operator's entry decides either way.
- ``limits``, ``stop_timeout_s`` and ``health.start_timeout_s`` are capped by the config's
  ``limits_max``: a plugin cannot take a terabyte, a hundred cores, hold the bot's shutdown for
  a day by ignoring SIGTERM, or hold the bot's startup for a day with an ``on_start`` that never
  returns (the bot is up only once every plugin is ready or has failed). Absurd values the
  kernel would refuse are capped by the same rule.

``bound`` returns the manifest the manager runs with and one note per change, in words, for
the log and for status.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# ``limits_max`` caps the ``LIMIT_FIELDS`` (and the two timeouts); ``number`` writes the values.
from rosey.protocol.manifest import LIMIT_FIELDS, Manifest, number

__all__ = ["LIMIT_FIELDS", "Bounded", "bound", "capped_note", "critical_note", "number"]


@dataclass(frozen=True)
class Bounded:
    """The manifest within the operator's bounds, and what was changed to get there."""

    manifest: Manifest
    notes: tuple[str, ...] = ()


def capped_note(field: str, asked: float, allowed: float) -> str:
    return f"{field} capped from {number(asked)} to {number(allowed)} by limits_max"


def critical_note(name: str) -> str:
    return (
        "critical: true in the manifest is ignored: only the operator's "
        f"plugins.{name}.critical: true makes a plugin critical"
    )


def bound(
    manifest: Manifest, caps: Mapping[str, float], *, operator_critical: bool | None
) -> Bounded:
    """``manifest`` (config entry already laid over it) within ``caps`` (``limits_max``).

    ``operator_critical`` is the operator's ``plugins.<name>.critical`` (None: not set).
    """
    notes: list[str] = []
    update: dict[str, Any] = {}
    critical = operator_critical is True
    if manifest.critical and operator_critical is None:
        notes.append(critical_note(manifest.name))
    if manifest.critical != critical:
        update["critical"] = critical
    limits: dict[str, int] = {}
    for field in LIMIT_FIELDS:
        asked = getattr(manifest.limits, field)
        allowed = int(caps[field])
        if asked > allowed:
            limits[field] = allowed
            notes.append(capped_note(f"limits.{field}", asked, allowed))
    if limits:
        update["limits"] = manifest.limits.model_copy(update=limits)
    if manifest.stop_timeout_s > caps["stop_timeout_s"]:
        update["stop_timeout_s"] = float(caps["stop_timeout_s"])
        notes.append(capped_note("stop_timeout_s", manifest.stop_timeout_s, caps["stop_timeout_s"]))
    start_timeout = manifest.health.start_timeout_s
    if start_timeout > caps["start_timeout_s"]:
        start_cap = float(caps["start_timeout_s"])
        update["health"] = manifest.health.model_copy(update={"start_timeout_s": start_cap})
        notes.append(capped_note("health.start_timeout_s", start_timeout, start_cap))
    bounded = manifest.model_copy(update=update) if update else manifest
    return Bounded(bounded, tuple(notes))
