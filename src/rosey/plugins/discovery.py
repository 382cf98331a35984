"""Discovery: find plugin folders, validate them, and report every problem without stopping.

A bad manifest, a missing entrypoint module or class, or a command already claimed by another
plugin skips only that plugin; the rest load. Plugin code is never run here: the entrypoint
class is found by reading the module's syntax tree.

A plugin's name is its identity: its operator config (``plugins.<name>``), data folder, storage
bucket and broker identity all hang off it. So when two folders declare the same ``name:``,
*neither* is loaded, and the problem of each names every folder: letting the one that sorts
first win would hand a genuine plugin's config, data and bucket to an impostor. A folder
counts as declaring a name as soon as its manifest says ``name: X``, even if the rest of it is
invalid (else breaking the genuine manifest would let the impostor win again).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rosey.errors import ManifestError
from rosey.plugins.declared import command_docs
from rosey.plugins.reading import ManifestReader, read_in_process
from rosey.protocol.manifest import Manifest

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
    #: Names declared by more than one folder (none of those folders is loaded): the folders.
    duplicates: dict[str, tuple[Path, ...]] = field(default_factory=dict)


def duplicate_text(name: str, folders: Sequence[Path]) -> str:
    """Why none of ``folders`` is loaded, naming every one of them."""
    listed = ", ".join(str(folder) for folder in folders)
    return (
        f"plugin name {name!r} is declared by {len(folders)} folders: {listed}; none of them "
        "starts (names must be unique: rename or remove all but one)"
    )


def manifest_files(paths: Iterable[Path]) -> list[Path]:
    """``plugin.yaml`` files under the given paths: a plugins folder, a plugin folder, or a file.

    Each file once, even when two paths reach it (a folder is not a duplicate of itself).
    """
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
    unique: dict[Path, Path] = {}
    for file in found:
        unique.setdefault(file.resolve(), file)
    return list(unique.values())


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


def discover(paths: Sequence[Path], read: ManifestReader = read_in_process) -> Discovery:
    """Load every plugin under ``paths``; problems are collected, never raised.

    ``read`` reads and checks the manifest files: here by default, in the checker process
    for the running bot (``rosey.checker.ManifestReads``).
    """
    result = Discovery()
    valid: list[DiscoveredPlugin] = []
    declared: dict[str, list[Path]] = {}  # name -> folders whose manifest says so
    for item in read(manifest_files(paths)):
        manifest_path, source = item.path, str(item.path)
        if item.declared is not None:
            declared.setdefault(item.declared, []).append(manifest_path.parent)
        if item.manifest is None:
            result.problems.extend(item.problems)
            continue
        manifest = item.manifest
        folder = manifest_path.parent
        entry_problem = check_entrypoint(manifest, folder, source)
        if entry_problem is not None:
            result.problems.append(entry_problem)
            continue
        if manifest.kind == "connector":
            # A connector runs only as a ``connectors:`` instance of the bot config, with that
            # instance's settings (rosey.connectors.instances), never as a plugin by itself.
            continue
        valid.append(DiscoveredPlugin(manifest, folder))
    for name, folders in declared.items():
        if len(folders) > 1:
            result.duplicates[name] = tuple(folders)
            text = duplicate_text(name, folders)
            result.problems.extend(
                ManifestError(str(folder / MANIFEST_FILE), "name", text) for folder in folders
            )
    claimed: dict[str, str] = {}  # command -> plugin
    for plugin in valid:
        manifest, source = plugin.manifest, str(plugin.manifest_path)
        if manifest.name in result.duplicates:
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
        result.plugins[manifest.name] = plugin
    return result


def authoring_problems(found: Discovery) -> list[ManifestError]:
    """What ``rosey plugin validate`` checks beyond what stops a plugin from loading.

    Commands listed in ``commands`` that the entrypoint class has no ``@command`` handler for
    (its chat users get "has no command"), handlers not listed (the router never sends their
    command), and dependencies that are not among the plugins found (the plugin would never
    start). The handlers are read from the source (``rosey.plugins.declared``), never imported;
    when the class inherits from a class of another module, missing handlers are not claimed.
    """
    from rosey.protocol.problems import YamlFileError, line_of, load_yaml_lines

    problems: list[ManifestError] = []
    for name, plugin in sorted(found.plugins.items()):
        manifest, source = plugin.manifest, str(plugin.manifest_path)
        try:
            _, lines = load_yaml_lines(plugin.manifest_path)
        except YamlFileError:
            lines = {}
        code = command_docs(manifest.entrypoint, plugin.folder)
        if code.found:
            for index, command in enumerate(manifest.commands):
                if command not in code.handlers and code.complete:
                    problems.append(
                        ManifestError(
                            source,
                            f"commands.{index}",
                            f"!{command} has no handler: {manifest.entrypoint} has no method "
                            f'decorated @command("{command}") (add one, or remove it here)',
                            line=line_of(lines, ("commands", index)),
                        )
                    )
            for command, doc in sorted(code.handlers.items()):
                if command not in manifest.commands:
                    problems.append(
                        ManifestError(
                            source,
                            "commands",
                            f"{manifest.class_name}.{doc.method} handles !{command}, which is "
                            f"not listed here: the bot never sends it (add {command!r})",
                            line=line_of(lines, ("commands",)),
                        )
                    )
        for index, dependency in enumerate(manifest.dependencies):
            if dependency not in found.plugins and dependency not in found.duplicates:
                problems.append(
                    ManifestError(
                        source,
                        f"dependencies.{index}",
                        f"no plugin {dependency!r} among those found "
                        f"({', '.join(sorted(found.plugins)) or 'none'}): plugin {name!r} "
                        "would never start (validate its folder too, or remove it here)",
                        line=line_of(lines, ("dependencies", index)),
                    )
                )
    return problems
