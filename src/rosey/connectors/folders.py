"""Connector folders as ``rosey plugin validate`` checks them (offline: nothing is imported).

A folder whose manifest says ``kind: connector`` is never started as a plugin
(``rosey.plugins.discovery`` loads its manifest and entrypoint, then leaves it out), so without
this a broken connector would pass ``validate`` and fail only when a ``connectors:`` entry
starts it. What is checked beyond the manifest and the entrypoint file:

- ``config.platform``: the platform the core stamps on every event the connector reports
  (``rosey.security.connector_relay``), a subject token; without it no instance can start;
- the entrypoint class subclasses ``ConnectorPlugin`` (``rosey.sdk.connector``), read from the
  source: a plain ``Plugin`` has no ``make_client`` and never receives its sends. A base class
  from another module (other than the SDK's) is taken on trust;
- ``commands``: a connector answers none (the router sends commands to plugins).
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rosey.errors import ManifestError, SubjectError
from rosey.plugins.declared import module_file, name_of
from rosey.plugins.discovery import MANIFEST_FILE, check_entrypoint, manifest_files
from rosey.protocol import subjects
from rosey.protocol.manifest import Manifest, load_manifest

__all__ = ["ConnectorFolders", "check_connector", "connector_folders"]

#: The seam's class (``rosey.sdk.connector``), by the names a connector module may use for it.
_SEAM = "ConnectorPlugin"
#: SDK classes that are not the seam: a class built on them alone is not a connector.
_NOT_SEAM = frozenset({"Plugin", "object"})


@dataclass
class ConnectorFolders:
    """The connector folders found: the valid ones by name, and every problem."""

    valid: dict[str, Path] = field(default_factory=dict)
    problems: list[ManifestError] = field(default_factory=list)


def connector_folders(paths: Sequence[Path]) -> ConnectorFolders:
    """Every ``kind: connector`` folder under ``paths``, checked. A manifest that does not load
    is left to ``rosey.plugins.discovery`` (which reports it), so it is not reported twice."""
    found = ConnectorFolders()
    for manifest_path in manifest_files(paths):
        try:
            manifest = load_manifest(manifest_path)
        except ManifestError:
            continue
        if manifest.kind != "connector":
            continue
        folder = manifest_path.parent
        if check_entrypoint(manifest, folder, str(manifest_path)) is not None:
            continue  # discovery reports it
        problems = check_connector(manifest, folder)
        if problems:
            found.problems.extend(problems)
        else:
            found.valid[manifest.name] = folder
    return found


def check_connector(manifest: Manifest, folder: Path) -> list[ManifestError]:
    """What is wrong with a connector whose manifest and entrypoint file are fine (pure but for
    reading its entrypoint module)."""
    source = str(folder / MANIFEST_FILE)
    problems: list[ManifestError] = []
    platform = manifest.config.get("platform")
    if not isinstance(platform, str) or not platform:
        problems.append(
            ManifestError(
                source,
                "config.platform",
                "a connector names its platform (a string, e.g. irc): the core stamps it on "
                "every event the connector reports",
            )
        )
    else:
        try:
            subjects.platform_send(platform)
        except SubjectError as exc:
            problems.append(ManifestError(source, "config.platform", exc.problem))
    if manifest.commands:
        problems.append(
            ManifestError(
                source,
                "commands",
                "a connector answers no chat commands (the router sends them to plugins); "
                "remove them, or put them in a plugin",
            )
        )
    why = _not_a_connector_class(manifest, folder)
    if why is not None:
        problems.append(ManifestError(source, "entrypoint", why))
    return problems


def _not_a_connector_class(manifest: Manifest, folder: Path) -> str | None:
    """Why the entrypoint class is not a ``ConnectorPlugin``, or None (also when unsure)."""
    module, class_name = manifest.entrypoint.split(":", 1)
    path = module_file(module, folder)
    if path is None:
        return None  # check_entrypoint says so
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (SyntaxError, ValueError):
        return None  # check_entrypoint says so
    verdict = subclasses_seam(tree, class_name)
    if verdict is False:
        return (
            f"{manifest.entrypoint} is not a ConnectorPlugin: a connector's class subclasses "
            "rosey.sdk.connector.ConnectorPlugin and builds its platform client in make_client()"
        )
    return None


def subclasses_seam(tree: ast.Module, class_name: str) -> bool | None:
    """Whether ``class_name`` derives from ``ConnectorPlugin`` through classes of this module:
    True, False, or None when a base from elsewhere leaves it open (pure)."""
    classes = {node.name: node for node in ast.walk(tree) if isinstance(node, ast.ClassDef)}
    seen: set[str] = set()

    def verdict(name: str) -> bool | None:
        if name == _SEAM:
            return True
        if name in _NOT_SEAM:
            return False
        if name not in classes:
            return None  # imported from somewhere we do not read
        if name in seen:
            return False
        seen.add(name)
        answers = [verdict(name_of(base)) for base in classes[name].bases]
        if True in answers:
            return True
        return None if None in answers else False

    return verdict(class_name)
