"""Discovery: find plugin folders, validate them, and report every problem without stopping.

A bad manifest, a duplicate name, a missing entrypoint module or class, or a command already
claimed by another plugin skips only that plugin; the rest load. Plugin code is never run
here: the entrypoint class is found by reading the module's syntax tree.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rosey.errors import ManifestError
from rosey.plugins.manifest import Manifest, load_yaml, manifest_problems

MANIFEST_FILE = "plugin.yaml"


@dataclass(frozen=True)
class DiscoveredPlugin:
    manifest: Manifest
    folder: Path

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def manifest_path(self) -> Path:
        return self.folder / MANIFEST_FILE


@dataclass(frozen=True)
class Discovery:
    """What was found: the usable plugins (by name) and every problem, in order."""

    plugins: dict[str, DiscoveredPlugin] = field(default_factory=dict)
    problems: list[ManifestError] = field(default_factory=list)


def manifest_files(paths: Iterable[Path]) -> list[Path]:
    """``plugin.yaml`` files under the given paths: a plugins folder, a plugin folder, or a file."""
    found: list[Path] = []
    for path in paths:
        if path.is_file():
            found.append(path)
        elif (path / MANIFEST_FILE).is_file():
            found.append(path / MANIFEST_FILE)
        elif path.is_dir():
            found.extend(
                sorted(p / MANIFEST_FILE for p in path.iterdir() if (p / MANIFEST_FILE).is_file())
            )
    return found


def check_entrypoint(manifest: Manifest, folder: Path, source: str) -> ManifestError | None:
    """The entrypoint's module must exist in the folder and define the class (by syntax tree)."""
    relative = Path(*manifest.module.split("."))
    candidates = [folder / relative.with_suffix(".py"), folder / relative / "__init__.py"]
    module_file = next((c for c in candidates if c.is_file()), None)
    if module_file is None:
        return ManifestError(
            source,
            "entrypoint",
            f"module {manifest.module!r} not found: expected {candidates[0].name} "
            f"or {relative}/__init__.py in {folder}",
        )
    try:
        tree = ast.parse(module_file.read_bytes(), filename=str(module_file))
    except (SyntaxError, ValueError) as exc:
        return ManifestError(
            source, "entrypoint", f"module {module_file.name} does not parse: {exc}"
        )
    classes = {node.name for node in ast.walk(tree) if isinstance(node, ast.ClassDef)}
    names = classes | {
        target.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    if manifest.class_name not in names:
        return ManifestError(
            source,
            "entrypoint",
            f"module {module_file.name} defines no class {manifest.class_name!r}"
            + (f" (it defines: {', '.join(sorted(classes))})" if classes else ""),
        )
    return None


def discover(paths: Sequence[Path]) -> Discovery:
    """Load every plugin under ``paths``; problems are collected, never raised."""
    result = Discovery()
    claimed: dict[str, str] = {}  # command -> plugin
    for manifest_path in manifest_files(paths):
        source = str(manifest_path)
        try:
            data = load_yaml(manifest_path)
        except ManifestError as exc:
            result.problems.append(exc)
            continue
        problems = manifest_problems(data, source)
        if problems:
            result.problems.extend(problems)
            continue
        manifest = Manifest.model_validate(data)
        folder = manifest_path.parent
        entry_problem = check_entrypoint(manifest, folder, source)
        if entry_problem is not None:
            result.problems.append(entry_problem)
            continue
        existing = result.plugins.get(manifest.name)
        if existing is not None:
            result.problems.append(
                ManifestError(
                    source,
                    "name",
                    f"plugin name {manifest.name!r} is already used by {existing.manifest_path}; "
                    "this one is skipped (names must be unique)",
                )
            )
            continue
        conflicts = [(c, claimed[c]) for c in manifest.commands if c in claimed]
        if conflicts:
            text = ", ".join(
                f"!{c} is already claimed by plugin {owner!r}" for c, owner in conflicts
            )
            result.problems.append(
                ManifestError(source, "commands", f"{text}; plugin {manifest.name!r} is skipped")
            )
            continue
        for command in manifest.commands:
            claimed[command] = manifest.name
        result.plugins[manifest.name] = DiscoveredPlugin(manifest, folder)
    return result
