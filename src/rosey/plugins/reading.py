"""Reading one ``plugin.yaml``: its YAML, the name it declares, its checked manifest or problems.

The first step of discovery (``rosey.plugins.discovery``), and the only one that parses the
plugin's file and runs the pydantic models: the bot does it in the checker process
(``rosey.checker.ManifestReads``), the command line and tests here (``read_in_process``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rosey.errors import ManifestError
from rosey.protocol.manifest import Manifest

__all__ = ["ManifestRead", "ManifestReader", "read_in_process", "read_manifest"]


@dataclass(frozen=True)
class ManifestRead:
    """One ``plugin.yaml`` read: its manifest, or every problem that kept it from being one."""

    path: Path
    #: The ``name:`` it says, even when the rest is invalid (discovery's duplicate rule).
    declared: str | None
    manifest: Manifest | None
    problems: tuple[ManifestError, ...]


#: Reads manifest files, one ``ManifestRead`` each, in order.
ManifestReader = Callable[[Sequence[Path]], list[ManifestRead]]


def read_manifest(path: Path) -> ManifestRead:
    """Read and check ``path`` in this process (PyYAML and pydantic)."""
    from rosey.protocol.manifest_schema import manifest_problems
    from rosey.protocol.problems import YamlFileError, load_yaml_lines

    source = str(path)
    try:
        data, lines = load_yaml_lines(path)
    except YamlFileError as exc:
        return ManifestRead(path, None, None, (ManifestError(source, "", exc.problem),))
    name = data.get("name") if isinstance(data, dict) else None
    declared = name if isinstance(name, str) else None
    problems = manifest_problems(data, source, lines)
    if problems:
        return ManifestRead(path, declared, None, tuple(problems))
    return ManifestRead(path, declared, Manifest.model_validate(data), ())


def read_in_process(paths: Sequence[Path]) -> list[ManifestRead]:
    """Each file read here, in order."""
    return [read_manifest(path) for path in paths]
