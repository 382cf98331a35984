"""Whether a plugin's re-read manifest may replace the one it runs with, and what changes.

Pure: the reload and the restart (``rosey.manager.reload``) read the plugin's folder again and
ask here before anything starts. A change is refused when the new manifest claims a command
another plugin answers, or introduces a dependency problem (a missing dependency, a cycle, a
plugin blocked by those) that the current set of manifests does not have, or, for a plugin
that is running, needs a dependency that is not running.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from rosey.errors import DependencyNotRunning
from rosey.manager.dependencies import plan
from rosey.protocol.manifest import Manifest

__all__ = ["Refusal", "change_summary", "refusal"]


@dataclass(frozen=True)
class Refusal:
    """Why a new manifest cannot be taken: the stage (``commands``, ``dependencies``) and
    the reason in words."""

    stage: str
    reason: str


def refusal(
    name: str,
    candidate: Manifest,
    dependencies: Mapping[str, Sequence[str]],
    owners: Mapping[str, str],
    *,
    running: bool,
    down: Mapping[str, str],
) -> Refusal | None:
    """Why ``candidate`` cannot replace ``name``'s manifest, or None.

    ``dependencies``: every known plugin's dependencies as they are now (``name``'s
    included); ``owners``: ``{command: plugin}`` as the router sees it; ``running``: whether
    ``name`` is running (its new dependencies must be, too); ``down``: the state of every
    plugin that is not running.
    """
    taken = [(c, owners[c]) for c in candidate.commands if owners.get(c, name) != name]
    if taken:
        return Refusal(
            "commands",
            ", ".join(f"!{c} is already claimed by plugin {owner!r}" for c, owner in taken),
        )
    before = plan(dependencies).problems
    after = plan({**dependencies, name: tuple(candidate.dependencies)}).problems
    introduced = sorted(
        (plugin for plugin in after if plugin not in before),
        key=lambda plugin: (plugin != name, plugin),
    )
    if introduced:
        return Refusal("dependencies", str(after[introduced[0]]))
    if running:
        for dep in candidate.dependencies:
            if dep in down:
                return Refusal("dependencies", str(DependencyNotRunning(name, dep, down[dep])))
    return None


def change_summary(old: Manifest, new: Manifest) -> list[str]:
    """What differs between two manifests of one plugin, one short line per field."""
    lines: list[str] = []
    if old.version != new.version:
        lines.append(f"version {old.version} → {new.version}")
    for field in ("permissions", "commands", "dependencies"):
        before, after = set(getattr(old, field)), set(getattr(new, field))
        added, removed = sorted(after - before), sorted(before - after)
        if added or removed:
            parts = [f"+{x}" for x in added] + [f"-{x}" for x in removed]
            lines.append(f"{field}: {' '.join(parts)}")
    for field in ("limits", "health", "config", "entrypoint", "restart_policy", "stop_timeout_s"):
        if getattr(old, field) != getattr(new, field):
            lines.append(f"{field} changed")
    return lines
