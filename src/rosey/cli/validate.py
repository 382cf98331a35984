"""``rosey plugin validate``: check plugin folders offline.

A path that does not exist is a usage error (exit 2): a typo must not pass as "0 plugin(s)
valid". A folder holding no ``plugin.yaml`` at all is a problem (exit 1) for the same reason.
The Python environment of each valid plugin with ``requirements`` is built here (in the state
folder's ``envs/``): a requirement that cannot be installed is a problem too. Each manifest is
also checked against the published JSON Schema (``rosey schema plugin``), so a manifest that
passes here passes in an editor that uses the schema.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from rosey.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from rosey.protocol.text import clean

if TYPE_CHECKING:
    from rosey.plugins.discovery import DiscoveredPlugin

__all__ = ["validate"]


def validate(paths: list[Path], state_dir: Path | None = None) -> int:
    from rosey.plugins.discovery import authoring_problems, discover, manifest_files

    given = paths or [Path("plugins")]
    missing = [path for path in given if not path.exists()]
    if missing:
        for path in missing:
            print(
                clean(f"rosey plugin validate: {path}: no such file or folder"),
                file=sys.stderr,
            )
        return EXIT_USAGE
    empty = [path for path in given if not manifest_files([path])]
    found = discover(given)
    problems = [str(p) for p in found.problems] + [
        f"{path}: no plugin.yaml found (give a plugins folder, a plugin folder or a plugin.yaml)"
        for path in empty
    ]
    # The published JSON Schema too (rosey.plugins.schema_check): what it adds to the model's.
    from rosey.cli.schema import generate
    from rosey.plugins.schema_check import schema_file_problems

    checked = schema_file_problems(manifest_files(given), generate("plugin"), found.problems)
    problems += [str(p) for p in checked]
    problems += [str(p) for p in authoring_problems(found)]
    from rosey.connectors.folders import connector_folders

    connectors = connector_folders(given)  # kind: connector folders (never started as plugins)
    problems += [str(p) for p in connectors.problems]
    problems += _build_environments(found.plugins.values(), state_dir)
    for problem in problems:
        print(clean(problem))
    if not problems:
        names = ", ".join(sorted(found.plugins)) or "none"
        print(f"{len(found.plugins)} plugin(s) valid: {names}")
        if connectors.valid:
            valid = ", ".join(sorted(connectors.valid))
            print(f"{len(connectors.valid)} connector(s) valid: {valid}")
    return EXIT_FAILED if problems else EXIT_OK


def _build_environments(plugins: Iterable[DiscoveredPlugin], state_dir: Path | None) -> list[str]:
    """Build the Python environment of each plugin with ``requirements`` (never done at
    start, DESIGN 2.10) under ``<state_dir>/envs``; the problems, one per failed build."""
    wanting = [plugin for plugin in plugins if plugin.manifest.requirements]
    if not wanting:
        return []
    from rosey.config import load_config
    from rosey.errors import ConfigError, EnvironmentBuildFailed
    from rosey.sandbox.environments import EnvironmentStore

    if state_dir is None:
        try:
            state_dir = load_config().state_dir
        except ConfigError as exc:
            return [f"cannot tell where to build Python environments: {exc} (give --state-dir)"]
    store = EnvironmentStore(state_dir.resolve() / "envs")
    problems: list[str] = []
    for plugin in sorted(wanting, key=lambda p: p.name):
        requirements = plugin.manifest.requirements
        built = store.python_for(requirements) is not None
        try:
            store.build(requirements)
        except EnvironmentBuildFailed as exc:
            problems.append(f"{plugin.manifest_path}: requirements: {exc}")
            continue
        what = "ready" if built else f"built with {store.tool}"
        print(f"{plugin.name}: Python environment {what}: {store.path_for(requirements)}")
    return problems
