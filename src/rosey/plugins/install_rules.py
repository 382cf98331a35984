"""What must hold before a plugin is installed or updated (pure; DESIGN 2.10).

Each check returns the problems in words (empty: fine), so the installer can report every
reason at once before anything on disk or in the bot changes:

- the name is free (install) or is the plugin being updated (update);
- no command is claimed by another plugin;
- the dependency graph with the new manifest has no missing dependency and no cycle;
- ``requires_rosey`` admits this Rosey's version (PEP 440);
- on update, ``version`` increases (PEP 440 ordering; semver pre-releases such as
  ``1.0.0-rc.1`` compare as PEP 440 reads them), unless forced.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from rosey.plugins.graph import resolve

if TYPE_CHECKING:  # packaging is imported by the checks that use it (installs, not the bot)
    from packaging.version import Version

__all__ = [
    "claim_problems",
    "dependency_problems",
    "name_problems",
    "parse_version",
    "rosey_version_problem",
    "version_problem",
]


def parse_version(text: str) -> Version | tuple[int, ...]:
    """A comparable version: PEP 440 when it parses, else the numeric semver core."""
    from packaging.version import InvalidVersion, Version

    try:
        return Version(text)
    except InvalidVersion:
        core = text.split("+", 1)[0].split("-", 1)[0]
        return tuple(int(part) for part in core.split(".") if part.isdigit())


def _older_or_equal(new: str, old: str) -> bool:
    from packaging.version import Version

    a, b = parse_version(new), parse_version(old)
    if isinstance(a, Version) and isinstance(b, Version):
        return a <= b
    key_a = a.release if isinstance(a, Version) else a
    key_b = b.release if isinstance(b, Version) else b
    return key_a <= key_b


def version_problem(old: str, new: str, *, force: bool) -> str | None:
    """An update must raise ``version`` (``--force`` allows the same or an older one)."""
    if force or not _older_or_equal(new, old):
        return None
    word = "the same as" if parse_version(new) == parse_version(old) else "older than"
    return (
        f"version {new} is {word} the installed {old}: an update must raise 'version' "
        "(pass --force to install it anyway)"
    )


def rosey_version_problem(requires: str | None, rosey_version: str) -> str | None:
    """``requires_rosey`` (a PEP 440 range) must admit this Rosey."""
    if requires is None:
        return None
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    try:
        admitted = SpecifierSet(requires).contains(rosey_version, prereleases=True)
    except InvalidSpecifier:
        return f"requires_rosey {requires!r} is not a PEP 440 version range"
    if admitted:
        return None
    return f"it needs Rosey {requires} (requires_rosey), this is Rosey {rosey_version}"


def name_problems(
    name: str, *, installed: Mapping[str, str], target_exists: bool, updating: str | None
) -> list[str]:
    """Install: the name and its folder must be free. Update: the source must be that plugin.

    ``installed`` maps each known plugin to its folder (for the message).
    """
    if updating is not None:
        if name != updating:
            return [f"the source holds plugin {name!r}, not {updating!r}"]
        return []
    problems = []
    if name in installed:
        problems.append(
            f"a plugin named {name!r} is already installed ({installed[name]}): "
            f"use 'rosey plugin update {name} SOURCE'"
        )
    elif target_exists:
        problems.append(f"the plugins folder already has a folder named {name!r}")
    return problems


def claim_problems(
    name: str, commands: Sequence[str], claims: Mapping[str, Sequence[str]]
) -> list[str]:
    """Commands of ``name`` that another plugin (in ``claims``) already answers."""
    owners = {c: other for other, cmds in claims.items() if other != name for c in cmds}
    return [
        f"!{command} is already claimed by plugin {owners[command]!r}"
        for command in commands
        if command in owners
    ]


def dependency_problems(
    name: str, dependencies: Sequence[str], graph: Mapping[str, Sequence[str]]
) -> list[str]:
    """Problems the new manifest brings into the graph ``{plugin: its dependencies}``:
    a dependency that is not installed, or a cycle through ``name``."""
    edges = {n: tuple(d) for n, d in graph.items() if n != name}
    edges[name] = tuple(dependencies)
    resolution = resolve(edges)
    problems = []
    if name in resolution.missing:
        missing = ", ".join(repr(m) for m in resolution.missing[name])
        problems.append(f"it depends on {missing}, which is not installed")
    if name in resolution.cycles:
        problems.append("it would close a dependency cycle: " + " → ".join(resolution.cycles[name]))
    return problems
