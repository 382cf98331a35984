"""Plugin dependencies: start waves, stop order, and why a plugin cannot start.

Input is ``{plugin: [dependencies]}`` for every installed plugin (manifest ``dependencies``,
after config overrides). :func:`resolve` sorts every plugin into exactly one of:

- a start **wave**: wave k holds the plugins whose dependencies are all in earlier waves, so a
  wave's plugins may start in parallel once the previous wave is ready;
- **missing**: it depends on a name that is not installed;
- **cycles**: it is on a dependency cycle (``a → a`` included), spelled in order ``a → b → a``;
- **blocked**: its own dependencies exist, but one of them (transitively) is missing or on a
  cycle; :class:`Blocked` names the chain and the culprit.

A plugin both on a cycle and with a missing dependency is in both ``missing`` and ``cycles``.
All orders are deterministic (names sorted), so logs and tests are stable.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

__all__ = [
    "Blocked",
    "Resolution",
    "dependencies_of",
    "dependents_of",
    "direct_dependents",
    "resolve",
]

#: ``{plugin: its dependencies}``; names missing as keys are not installed.
Graph = Mapping[str, Sequence[str]]

_ARROW = " → "


@dataclass(frozen=True)
class Blocked:
    """Why a plugin cannot start although all its direct dependencies are installed.

    ``path`` follows dependencies from the plugin to the culprit, the nearest plugin that is
    itself missing dependencies or on a cycle: ``("a", "b", "c")`` means a needs b needs c.
    """

    path: tuple[str, ...]
    #: The culprit's dependencies that are not installed.
    missing: tuple[str, ...] = ()
    #: The culprit's cycle, ``("c", "d", "c")``.
    cycle: tuple[str, ...] = ()

    @property
    def plugin(self) -> str:
        return self.path[0]

    @property
    def dependency(self) -> str:
        """The direct dependency through which the plugin is blocked."""
        return self.path[1]

    @property
    def culprit(self) -> str:
        return self.path[-1]

    @property
    def reason(self) -> str:
        """``last_error`` text: which dependency cannot start, and the root cause."""
        via = f"via {_ARROW.join(self.path[1:])}, " if len(self.path) > 2 else ""
        causes = []
        if self.missing:
            causes.append(f"{self.culprit!r} {_missing_text(self.missing)}")
        if self.cycle:
            causes.append(f"{self.culprit!r} {_cycle_text(self.cycle)}")
        return f"depends on {self.dependency!r}, which cannot start: {via}{'; '.join(causes)}"


@dataclass(frozen=True)
class Resolution:
    """The outcome of :func:`resolve`; every installed plugin is in waves or some problem map."""

    waves: tuple[tuple[str, ...], ...] = ()
    missing: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    cycles: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    blocked: Mapping[str, Blocked] = field(default_factory=dict)

    @property
    def start_order(self) -> tuple[str, ...]:
        """The waves flattened: a valid order to start one plugin after the other."""
        return tuple(name for wave in self.waves for name in wave)

    @property
    def stop_waves(self) -> tuple[tuple[str, ...], ...]:
        """The waves last first: dependents stop before what they depend on."""
        return tuple(reversed(self.waves))

    @property
    def stop_order(self) -> tuple[str, ...]:
        return tuple(reversed(self.start_order))

    @property
    def startable(self) -> frozenset[str]:
        return frozenset(self.start_order)

    def is_startable(self, name: str) -> bool:
        return name in self.startable

    def reason(self, name: str) -> str | None:
        """Why ``name`` cannot start, in words for ``last_error``; None when it can."""
        parts = []
        if name in self.missing:
            parts.append(_missing_text(self.missing[name]))
        if name in self.cycles:
            parts.append(_cycle_text(self.cycles[name]))
        if name in self.blocked:
            parts.append(self.blocked[name].reason)
        return "; ".join(parts) or None


def resolve(graph: Graph) -> Resolution:
    """Sort the plugins of ``graph`` into start waves and the ones that cannot start."""
    deps = _normalize(graph)
    missing = {
        name: tuple(dep for dep in wanted if dep not in deps)
        for name, wanted in deps.items()
        if any(dep not in deps for dep in wanted)
    }
    cycles = {name: cycle for name in deps if (cycle := _shortest_cycle(deps, name)) is not None}
    bad = missing.keys() | cycles.keys()
    blocked: dict[str, Blocked] = {}
    for name in deps:
        if name in bad:
            continue
        path = _path_to_first(deps, name, bad)
        if path is not None:
            culprit = path[-1]
            blocked[name] = Blocked(path, missing.get(culprit, ()), cycles.get(culprit, ()))
    good = [name for name in deps if name not in bad and name not in blocked]
    waves, _ = _layers(good, deps)
    return Resolution(
        waves=waves,
        missing=MappingProxyType(dict(sorted(missing.items()))),
        cycles=MappingProxyType(dict(sorted(cycles.items()))),
        blocked=MappingProxyType(dict(sorted(blocked.items()))),
    )


def direct_dependents(graph: Graph, name: str) -> tuple[str, ...]:
    """The plugins that list ``name`` as a dependency (itself excluded), sorted."""
    deps = _normalize(graph)
    return tuple(
        sorted(other for other, wanted in deps.items() if name in wanted and other != name)
    )


def dependents_of(graph: Graph, name: str) -> tuple[str, ...]:
    """Every plugin that needs ``name``, directly or not, in the order to stop them.

    Each plugin comes before the plugins it depends on, so stopping them in this order and then
    ``name`` never leaves a plugin running without its dependencies. Plugins caught in a cycle
    (which cannot be running) come first, sorted.
    """
    deps = _normalize(graph)
    reverse: dict[str, set[str]] = {}
    for other, wanted in deps.items():
        for dep in wanted:
            reverse.setdefault(dep, set()).add(other)
    found = _reachable(name, lambda node: sorted(reverse.get(node, ())))
    found.discard(name)
    layers, leftover = _layers(found, deps)
    return tuple(sorted(leftover)) + tuple(
        plugin for layer in reversed(layers) for plugin in reversed(layer)
    )


def dependencies_of(graph: Graph, name: str) -> tuple[str, ...]:
    """Every installed plugin ``name`` needs, directly or not, in an order to start them.

    Missing names are left out, and so is what a cycle makes impossible to order; use
    :func:`resolve` to learn whether ``name`` can start at all.
    """
    deps = _normalize(graph)
    found = _reachable(name, lambda node: deps.get(node, ()))
    found.discard(name)
    layers, _ = _layers(found & deps.keys(), deps)
    return tuple(plugin for layer in layers for plugin in layer)


def _missing_text(missing: Sequence[str]) -> str:
    names = ", ".join(map(repr, missing))
    return f"depends on {names}, which {'is' if len(missing) == 1 else 'are'} not installed"


def _cycle_text(cycle: Sequence[str]) -> str:
    return f"is on a dependency cycle: {_ARROW.join(cycle)}"


def _normalize(graph: Graph) -> dict[str, tuple[str, ...]]:
    """Sorted, de-duplicated dependencies; refuses a bare string (a sequence of letters)."""
    result: dict[str, tuple[str, ...]] = {}
    for name, wanted in sorted(graph.items()):
        if isinstance(wanted, str):
            raise TypeError(f"dependencies of {name!r} must be a list of names, not {wanted!r}")
        result[name] = tuple(sorted(set(wanted)))
    return result


def _reachable(start: str, neighbours: Callable[[str], Iterable[str]]) -> set[str]:
    """Nodes reachable from ``start`` by one edge or more (``start`` only if on a cycle)."""
    seen: set[str] = set()
    queue = deque(neighbours(start))
    while queue:
        node = queue.popleft()
        if node not in seen:
            seen.add(node)
            queue.extend(neighbours(node))
    return seen


def _shortest_cycle(deps: Mapping[str, tuple[str, ...]], start: str) -> tuple[str, ...] | None:
    """The shortest dependency cycle through ``start``, ``(start, ..., start)``, or None."""
    parent: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for dep in deps.get(node, ()):
            if dep == start:
                path = [node]
                while path[-1] != start:
                    path.append(parent[path[-1]])
                return (*reversed(path), start)
            if dep not in parent and dep in deps:
                parent[dep] = node
                queue.append(dep)
    return None


def _path_to_first(
    deps: Mapping[str, tuple[str, ...]], start: str, targets: Iterable[str]
) -> tuple[str, ...] | None:
    """The shortest dependency path from ``start`` to one of ``targets`` (first by name)."""
    wanted = set(targets)
    parent: dict[str, str] = {start: start}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for dep in deps.get(node, ()):
            if dep in parent or dep not in deps:
                continue
            parent[dep] = node
            if dep in wanted:
                path = [dep]
                while path[-1] != start:
                    path.append(parent[path[-1]])
                return tuple(reversed(path))
            queue.append(dep)
    return None


def _layers(
    nodes: Iterable[str], deps: Mapping[str, tuple[str, ...]]
) -> tuple[tuple[tuple[str, ...], ...], set[str]]:
    """Topological layers of ``nodes`` (edges outside them ignored) and the nodes left over.

    A node's layer is one past the deepest of its dependencies within ``nodes``; what cannot be
    placed (cycles and what depends on them) is returned as left over.
    """
    inside = set(nodes)
    # A self-dependency stays in its own set and so is never satisfied: left over.
    remaining = {node: set(deps.get(node, ())) & inside for node in inside}
    layers: list[tuple[str, ...]] = []
    placed: set[str] = set()
    while True:
        layer = sorted(node for node, wanted in remaining.items() if wanted <= placed)
        if not layer:
            break
        layers.append(tuple(layer))
        placed.update(layer)
        for node in layer:
            del remaining[node]
    return tuple(layers), set(remaining)
