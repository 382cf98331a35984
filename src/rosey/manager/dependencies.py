"""The manager's view of the dependency graph: who depends on whom, what cannot start, in
which order to stop (pure; the graph's rules are ``rosey.plugins.graph``).

Rebuilt whenever the set of plugins changes (start, ``rescan``): a missing dependency blocks
that plugin and its dependents, a cycle disables the plugins on it, everyone else can start.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from rosey.errors import DependencyBlocked, DependencyCycle, DependencyError, MissingDependency
from rosey.plugins.graph import Resolution, resolve

__all__ = ["DependencyPlan", "plan"]


@dataclass(frozen=True)
class DependencyPlan:
    """The graph, its resolution, each plugin's dependents and the problems no action fixes."""

    graph: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    resolution: Resolution = field(default_factory=Resolution)
    dependents: Mapping[str, list[str]] = field(default_factory=dict)
    #: Dependency problems that no runtime action can fix (missing, cycle, blocked by those).
    problems: Mapping[str, DependencyError] = field(default_factory=dict)

    def stop_order(self, names: Iterable[str]) -> tuple[list[str], dict[str, list[str]]]:
        """``names`` in stopping order, and for each the dependents it must wait for.

        Only plugins that can run order each other: the ones on a cycle or blocked by a missing
        dependency have no process, and their edges could loop.
        """
        wanted = set(names)
        startable = set(self.resolution.start_order)
        order = [n for n in reversed(self.resolution.start_order) if n in wanted]
        order += sorted(wanted - startable)
        after = {
            name: [d for d in self.dependents[name] if d in startable] if name in startable else []
            for name in order
        }
        return order, after


def plan(graph: Mapping[str, Sequence[str]]) -> DependencyPlan:
    """The plan for ``{plugin: its dependencies}``."""
    edges = {name: tuple(deps) for name, deps in graph.items()}
    resolution = resolve(edges)
    dependents: dict[str, list[str]] = {name: [] for name in edges}
    for name, deps in edges.items():
        for dep in deps:
            if dep in dependents and dep != name:
                dependents[dep].append(name)
    problems: dict[str, DependencyError] = {}
    for name, missing in resolution.missing.items():
        problems[name] = MissingDependency(name, missing)
    for name, cycle in resolution.cycles.items():
        problems.setdefault(name, DependencyCycle(name, cycle))
    for name, blocked in resolution.blocked.items():
        problems[name] = DependencyBlocked(name, blocked.dependency, blocked.reason)
    return DependencyPlan(edges, resolution, dependents, problems)
