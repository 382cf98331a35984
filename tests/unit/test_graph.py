"""Dependency resolution: waves, missing plugins, cycles, blocked plugins, stop orders."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rosey.plugins.graph import (
    Blocked,
    Resolution,
    dependencies_of,
    dependents_of,
    direct_dependents,
    resolve,
)

Graph = Mapping[str, Sequence[str]]

DIAMOND: Graph = {"base": [], "left": ["base"], "right": ["base"], "top": ["left", "right"]}


@pytest.mark.parametrize(
    ("graph", "waves"),
    [
        ({}, ()),
        ({"a": []}, (("a",),)),
        ({"b": [], "a": [], "c": []}, (("a", "b", "c"),)),  # sorted within a wave
        ({"a": ["b"], "b": ["c"], "c": []}, (("c",), ("b",), ("a",))),
        (DIAMOND, (("base",), ("left", "right"), ("top",))),
        # a needs c (wave 0) and b (wave 1): it goes right after its deepest dependency.
        ({"a": ["b", "c"], "b": ["c"], "c": [], "d": []}, (("c", "d"), ("b",), ("a",))),
        ({"a": ["b", "b"], "b": []}, (("b",), ("a",))),  # repeats do not matter
    ],
)
def test_waves(graph: Graph, waves: tuple[tuple[str, ...], ...]) -> None:
    result = resolve(graph)
    assert result.waves == waves
    assert (result.missing, result.cycles, result.blocked) == ({}, {}, {})


def test_missing_dependency_blocks_the_plugin_and_its_dependents() -> None:
    result = resolve({"a": ["x", "b"], "b": [], "c": ["a"], "d": ["c"], "e": ["b"]})
    assert result.waves == (("b",), ("e",))
    assert result.missing == {"a": ("x",)}
    assert result.cycles == {}
    assert result.blocked == {
        "c": Blocked(("c", "a"), missing=("x",)),
        "d": Blocked(("d", "c", "a"), missing=("x",)),
    }


def test_several_missing_dependencies_are_all_named() -> None:
    result = resolve({"a": ["z", "y", "b"], "b": []})
    assert result.missing == {"a": ("y", "z")}
    assert result.reason("a") == "depends on 'y', 'z', which are not installed"


@pytest.mark.parametrize(
    ("graph", "cycles"),
    [
        ({"a": ["a"]}, {"a": ("a", "a")}),
        ({"a": ["b"], "b": ["a"]}, {"a": ("a", "b", "a"), "b": ("b", "a", "b")}),
        (
            {"a": ["b"], "b": ["c"], "c": ["a"]},
            {"a": ("a", "b", "c", "a"), "b": ("b", "c", "a", "b"), "c": ("c", "a", "b", "c")},
        ),
        # Two cycles through a: the shorter one is reported.
        (
            {"a": ["b", "c"], "b": ["a"], "c": ["d"], "d": ["a"]},
            {
                "a": ("a", "b", "a"),
                "b": ("b", "a", "b"),
                "c": ("c", "d", "a", "c"),
                "d": ("d", "a", "c", "d"),
            },
        ),
    ],
)
def test_cycles_are_spelled_in_order(graph: Graph, cycles: dict[str, tuple[str, ...]]) -> None:
    result = resolve(graph)
    assert result.cycles == cycles
    assert result.waves == ()
    assert result.blocked == {}


def test_plugins_depending_on_a_cycle_are_blocked_and_the_rest_resolves() -> None:
    graph = {"a": ["b"], "b": ["c"], "c": ["b"], "d": ["a"], "e": [], "f": ["e"]}
    result = resolve(graph)
    assert result.waves == (("e",), ("f",))
    assert set(result.cycles) == {"b", "c"}
    assert result.blocked == {
        "a": Blocked(("a", "b"), cycle=("b", "c", "b")),
        "d": Blocked(("d", "a", "b"), cycle=("b", "c", "b")),
    }


def test_a_plugin_on_a_cycle_with_a_missing_dependency_is_in_both() -> None:
    result = resolve({"a": ["a", "x"], "b": ["a"]})
    assert result.missing == {"a": ("x",)}
    assert result.cycles == {"a": ("a", "a")}
    assert result.blocked == {"b": Blocked(("b", "a"), missing=("x",), cycle=("a", "a"))}
    assert result.reason("a") == (
        "depends on 'x', which is not installed; is on a dependency cycle: a → a"
    )


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("ok", None),
        ("unknown", None),
        ("m", "depends on 'x', which is not installed"),
        ("c1", "is on a dependency cycle: c1 → c2 → c1"),
        ("self", "is on a dependency cycle: self → self"),
        ("bm", "depends on 'm', which cannot start: 'm' depends on 'x', which is not installed"),
        (
            "bbm",
            "depends on 'bm', which cannot start: via bm → m, "
            "'m' depends on 'x', which is not installed",
        ),
        (
            "bc",
            "depends on 'c2', which cannot start: 'c2' is on a dependency cycle: c2 → c1 → c2",
        ),
    ],
)
def test_reason(name: str, reason: str | None) -> None:
    graph = {
        "ok": [],
        "m": ["x"],
        "c1": ["c2"],
        "c2": ["c1"],
        "self": ["self"],
        "bm": ["m", "ok"],
        "bbm": ["bm"],
        "bc": ["c2"],
    }
    assert resolve(graph).reason(name) == reason


def test_blocked_fields() -> None:
    blocked = Blocked(("a", "b", "c"), missing=("x",))
    assert (blocked.plugin, blocked.dependency, blocked.culprit) == ("a", "b", "c")


def test_orders_and_startable() -> None:
    result = resolve({**DIAMOND, "broken": ["gone"]})
    assert result.start_order == ("base", "left", "right", "top")
    assert result.stop_order == ("top", "right", "left", "base")
    assert result.stop_waves == (("top",), ("left", "right"), ("base",))
    assert result.startable == {"base", "left", "right", "top"}
    assert result.is_startable("left")
    assert not result.is_startable("broken")
    assert not result.is_startable("gone")


def test_resolution_maps_are_read_only() -> None:
    result = resolve({"a": ["x"]})
    with pytest.raises(TypeError):
        result.missing["b"] = ("y",)  # type: ignore[index]


def test_empty_resolution() -> None:
    assert Resolution().start_order == ()
    assert Resolution().reason("a") is None


def test_a_string_is_not_a_list_of_dependencies() -> None:
    with pytest.raises(TypeError, match="dependencies of 'a' must be a list"):
        resolve({"a": "bc"})


CHAIN: Graph = {"a": [], "b": ["a"], "c": ["b"], "d": ["a", "c"], "e": [], "f": ["b"]}


@pytest.mark.parametrize(
    ("graph", "name", "direct", "transitive"),
    [
        (CHAIN, "a", ("b", "d"), ("d", "f", "c", "b")),
        (CHAIN, "b", ("c", "f"), ("d", "f", "c")),
        (CHAIN, "d", (), ()),
        (CHAIN, "e", (), ()),
        (CHAIN, "unknown", (), ()),
        (DIAMOND, "base", ("left", "right"), ("top", "right", "left")),
        ({"a": ["x"], "b": ["a"]}, "x", ("a",), ("b", "a")),  # x is not installed
        ({"a": ["a"], "b": ["a"]}, "a", ("b",), ("b",)),  # a self-dependency is no dependent
        # b and c form a cycle depending on a: they come first, then what is orderable.
        ({"a": [], "b": ["a", "c"], "c": ["b"], "d": ["a"]}, "a", ("b", "d"), ("b", "c", "d")),
    ],
)
def test_dependents(
    graph: Graph, name: str, direct: tuple[str, ...], transitive: tuple[str, ...]
) -> None:
    assert direct_dependents(graph, name) == direct
    assert dependents_of(graph, name) == transitive


@pytest.mark.parametrize(
    ("graph", "name", "expected"),
    [
        (CHAIN, "d", ("a", "b", "c")),
        (CHAIN, "a", ()),
        (DIAMOND, "top", ("base", "left", "right")),
        ({"a": ["x", "b"], "b": []}, "a", ("b",)),  # missing names are left out
        ({"a": ["b"], "b": ["a"]}, "a", ("b",)),
        ({"a": ["b"], "b": ["c"], "c": ["b"]}, "a", ()),  # a cycle cannot be ordered
        (CHAIN, "unknown", ()),
    ],
)
def test_dependencies_of(graph: Graph, name: str, expected: tuple[str, ...]) -> None:
    assert dependencies_of(graph, name) == expected


# --- properties -------------------------------------------------------------------------------

NAMES = [f"p{i}" for i in range(8)]


@st.composite
def dags(draw: st.DrawFn) -> dict[str, list[str]]:
    """Acyclic graphs: plugin i may only depend on plugins with a smaller index."""
    size = draw(st.integers(0, len(NAMES)))
    return {
        NAMES[i]: draw(st.lists(st.sampled_from(NAMES[:i]), max_size=4)) if i else []
        for i in range(size)
    }


#: Any graph over a few names, with cycles, self-dependencies and missing names (``x*``).
graphs = st.dictionaries(
    st.sampled_from(NAMES),
    st.lists(st.sampled_from([*NAMES, "x1", "x2"]), max_size=3),
    max_size=len(NAMES),
)


def _wave_index(result: Resolution) -> dict[str, int]:
    return {name: k for k, wave in enumerate(result.waves) for name in wave}


@given(dags())
def test_waves_of_a_dag_hold_everyone_and_respect_dependencies(graph: dict[str, list[str]]) -> None:
    result = resolve(graph)
    index = _wave_index(result)
    assert set(index) == set(graph)
    assert len(result.start_order) == len(graph)
    for name, deps in graph.items():
        assert all(index[dep] < index[name] for dep in deps)
        # As early as possible: right after the deepest dependency.
        assert index[name] == (1 + max(index[dep] for dep in deps) if deps else 0)
    assert all(list(wave) == sorted(wave) for wave in result.waves)


def _on_cycle(graph: Graph, name: str) -> bool:
    seen: set[str] = set()
    stack = list(graph.get(name, ()))
    while stack:
        node = stack.pop()
        if node == name:
            return True
        if node not in seen:
            seen.add(node)
            stack.extend(graph.get(node, ()))
    return False


def _startable(graph: Graph) -> set[str]:
    """Fixpoint oracle: a plugin can start once all its dependencies are installed and can."""
    ok: set[str] = set()
    while True:
        more = {n for n, deps in graph.items() if n not in ok and set(deps) <= ok}
        if not more:
            return ok
        ok |= more


@given(graphs)
def test_every_plugin_is_classified_and_the_classes_agree_with_oracles(graph: Graph) -> None:
    result = resolve(graph)
    index = _wave_index(result)
    assert set(index) == _startable(graph)
    assert set(result.missing) == {n for n, deps in graph.items() if set(deps) - set(graph)}
    assert set(result.cycles) == {n for n in graph if _on_cycle(graph, n)}
    bad = set(result.missing) | set(result.cycles)
    assert set(result.blocked) == set(graph) - set(index) - bad
    assert not set(index) & (bad | set(result.blocked))
    for name, deps in graph.items():
        if name in index:
            assert all(index[dep] < index[name] for dep in deps)
    for name, cycle in result.cycles.items():
        assert cycle[0] == cycle[-1] == name
        assert all(b in graph[a] for a, b in itertools.pairwise(cycle))
    for name, blocked in result.blocked.items():
        assert blocked.plugin == name
        assert blocked.culprit in bad
        assert all(b in graph[a] for a, b in itertools.pairwise(blocked.path))
        assert not set(blocked.path[:-1]) & bad  # the nearest culprit
    for name in graph:
        assert (result.reason(name) is None) is (name in index)


@given(dags(), st.sampled_from(NAMES))
def test_dependents_stop_before_what_they_depend_on(graph: dict[str, list[str]], name: str) -> None:
    order = dependents_of(graph, name)
    position = {plugin: i for i, plugin in enumerate(order)}
    assert len(position) == len(order)
    assert set(order) == {n for n in graph if n != name and name in _closure(graph, n)}
    for plugin in order:
        for dep in graph[plugin]:
            if dep in position:
                assert position[plugin] < position[dep]


@given(dags(), st.sampled_from(NAMES))
def test_dependencies_start_before_what_needs_them(graph: dict[str, list[str]], name: str) -> None:
    order = dependencies_of(graph, name)
    position = {plugin: i for i, plugin in enumerate(order)}
    assert set(order) == _closure(graph, name) - {name}
    for plugin in order:
        for dep in graph[plugin]:
            assert position[dep] < position[plugin]


def _closure(graph: Graph, name: str) -> set[str]:
    """Everything ``name`` reaches by following dependencies (installed plugins only)."""
    seen: set[str] = set()
    stack = list(graph.get(name, ()))
    while stack:
        node = stack.pop()
        if node in graph and node not in seen:
            seen.add(node)
            stack.extend(graph[node])
    return seen
