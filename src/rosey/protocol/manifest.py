"""The ``plugin.yaml`` model (DESIGN 2.2), validated at the edge: a contract, so it lives here.

The config (``plugins.<name>`` entries, ``limits_max``), the plugin rules (``rosey.plugins``),
the lifecycle policy and the manager all read it; it sits at the bottom of the import picture
with the other contracts so that none of them has to import upwards.

Off the plugin process's import path (pydantic, YAML): nothing else in ``rosey.protocol``
imports this module (checked by ``.importlinter``), and plugin processes receive the already
validated values from the manager through their bootstrap pipe.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from rosey.errors import ManifestError
from rosey.protocol.problems import Lines, describe

__all__ = [
    "ALLOWED_BY_PATTERN",
    "ALLOWED_GRANTS",
    "COMMAND_PATTERN",
    "ENTRYPOINT_PATTERN",
    "GRANT_PATTERN",
    "LIMIT_FIELDS",
    "NAME_PATTERN",
    "SEMVER_PATTERN",
    "CpuPercent",
    "DataMb",
    "Health",
    "Limits",
    "Manifest",
    "MaxProcesses",
    "MemoryMb",
    "OpenFiles",
    "PluginName",
    "RestartPolicy",
    "Seconds",
    "describe_validation_error",
    "load_manifest",
    "load_yaml",
    "manifest_problems",
    "number",
    "parse_manifest",
]

NAME_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"
COMMAND_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,31}$"
SEMVER_PATTERN = (
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$"
)
ENTRYPOINT_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$"
GRANT_PATTERN = (
    r"^(events\.message|events\.all|chat\.send|storage|network"
    r"|plugins\.call:[a-z][a-z0-9_]{0,31}|plugins\.events:[a-z][a-z0-9_]{0,31})$"
)
ALLOWED_GRANTS = (
    "events.message, events.all, chat.send, storage, network, "
    "plugins.call:<name>, plugins.events:<name>"
)

PluginName = Annotated[str, Field(pattern=NAME_PATTERN)]
#: ``restart_policy``: the one definition (``rosey.lifecycle.policy`` decides with it).
RestartPolicy = Literal["always", "on-failure", "never"]
Seconds = Annotated[float, Field(gt=0, le=86400)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


#: The manifest ``limits`` fields (in order); ``limits_max`` caps each, the config may override.
LIMIT_FIELDS = ("memory_mb", "cpu_percent", "max_processes", "open_files", "data_mb")


def number(value: float) -> str:
    """``1048576`` and ``2.5``, never ``1.04858e+06`` (limits in messages)."""
    return str(int(value)) if float(value).is_integer() else str(value)


# The range of each limit, what the kernel accepts: one definition for the manifest's
# ``limits``, the config's ``plugins.<name>.limits`` and its ``limits_max`` (rosey.config).
MemoryMb = Annotated[int, Field(ge=16, le=1024 * 1024)]
CpuPercent = Annotated[int, Field(ge=1, le=100 * 1024)]
MaxProcesses = Annotated[int, Field(ge=1, le=4096)]
OpenFiles = Annotated[int, Field(ge=16, le=1024 * 1024)]
DataMb = Annotated[int, Field(ge=1, le=1024 * 1024)]


class Limits(_Strict):
    memory_mb: MemoryMb = 256
    cpu_percent: CpuPercent = 50
    max_processes: MaxProcesses = 32
    open_files: OpenFiles = 256
    #: Quota of the plugin's data folder (enforced by the sandbox).
    data_mb: DataMb = 100


class Health(_Strict):
    interval_s: Seconds = 10.0
    timeout_s: Seconds = 2.0
    failure_threshold: Annotated[int, Field(ge=1, le=100)] = 3
    start_timeout_s: Seconds = 15.0


class Manifest(_Strict):
    name: PluginName
    version: Annotated[str, Field(pattern=SEMVER_PATTERN)]
    description: str = ""
    #: ``connector``: joins a chat platform to the bus (DESIGN 2.9); run by the ``connectors:``
    #: section of the bot config, one process per instance, never from a plugins folder alone.
    kind: Literal["plugin", "connector"] = "plugin"
    entrypoint: Annotated[str, Field(pattern=ENTRYPOINT_PATTERN)]
    commands: list[Annotated[str, Field(pattern=COMMAND_PATTERN)]] = []
    dependencies: list[PluginName] = []
    restart_policy: RestartPolicy = "on-failure"
    critical: bool = False
    permissions: list[Annotated[str, Field(pattern=GRANT_PATTERN)]] = []
    limits: Limits = Limits()
    health: Health = Health()
    stop_timeout_s: Seconds = 5.0
    config: dict[str, Any] = {}
    #: The Rosey versions it runs on, a PEP 440 specifier (``>=0.1,<1``); checked at install.
    requires_rosey: str | None = None

    @field_validator("requires_rosey")
    @classmethod
    def _specifier(cls, value: str | None) -> str | None:
        if value is not None:
            from packaging.specifiers import InvalidSpecifier, SpecifierSet

            try:
                SpecifierSet(value)
            except InvalidSpecifier:
                raise ValueError(
                    f"{value!r} is not a version range; expected a PEP 440 specifier such as "
                    "'>=0.1,<1'"
                ) from None
        return value

    #: PEP 508 strings: the plugin runs in its own Python environment with these packages
    #: (DESIGN 2.10; built by ``rosey.sandbox.environments`` at validate/install time).
    requirements: list[str] = []

    @field_validator("requirements")
    @classmethod
    def _pep508(cls, value: list[str]) -> list[str]:
        from packaging.requirements import InvalidRequirement, Requirement

        for item in value:
            try:
                name = Requirement(item).name
            except InvalidRequirement as exc:
                raise ValueError(
                    f"{item!r} is not a valid requirement ({str(exc).splitlines()[0]}); "
                    "expected a PEP 508 string "
                    "such as 'six==1.16.0' or 'requests>=2,<3'"
                ) from None
            if name.lower() == "rosey":
                raise ValueError(f"{item!r}: the rosey package is the bot's own; leave it out")
        return value

    @field_validator("commands", "dependencies", "permissions", "requirements")
    @classmethod
    def _no_repeats(cls, value: list[str]) -> list[str]:
        seen: set[str] = set()
        for item in value:
            if item in seen:
                raise ValueError(f"{item!r} is listed twice")
            seen.add(item)
        return value

    @property
    def module(self) -> str:
        return self.entrypoint.split(":", 1)[0]

    @property
    def class_name(self) -> str:
        return self.entrypoint.split(":", 1)[1]


#: What each pattern allows, in words (``rosey.protocol.problems.describe`` quotes them).
ALLOWED_BY_PATTERN = {
    NAME_PATTERN: "a lowercase name: a letter, then up to 31 letters, digits or '_'",
    COMMAND_PATTERN: "a lowercase command word: letters, digits, '_' or '-', up to 32",
    SEMVER_PATTERN: "a semantic version such as 1.0.0",
    ENTRYPOINT_PATTERN: "'module:Class', e.g. dice:DicePlugin",
    GRANT_PATTERN: f"one of {ALLOWED_GRANTS}",
}


def describe_validation_error(
    error: ValidationError, root: type[BaseModel] | None = None
) -> list[tuple[str, str]]:
    """``(field, problem)`` pairs in words a person can act on (``problems.describe``)."""
    return [
        (p.field, p.problem) for p in describe(error, root or Manifest, None, ALLOWED_BY_PATTERN)
    ]


def parse_manifest(data: Any, source: str) -> Manifest:
    """Validate already-loaded YAML data; raise ``ManifestError`` for the first problem."""
    errors = manifest_problems(data, source)
    if errors:
        raise errors[0]
    return Manifest.model_validate(data)


def manifest_problems(data: Any, source: str, lines: Lines | None = None) -> list[ManifestError]:
    """Every problem of a manifest, each as a ``ManifestError`` naming the file and field (and
    its line, given the file's ``lines`` from ``rosey.protocol.problems.load_yaml_lines``)."""
    if not isinstance(data, dict):
        return [ManifestError(source, "", "must be a YAML mapping of keys to values")]
    try:
        Manifest.model_validate(data)
    except ValidationError as exc:
        return [
            ManifestError(source, field, problem, line=line)
            for field, problem, line in describe(exc, Manifest, lines, ALLOWED_BY_PATTERN)
        ]
    return []


def load_yaml(path: Path) -> Any:
    """Read a YAML file, translating read and syntax errors into ``ManifestError``."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ManifestError(str(path), "", f"cannot be read: {exc.strerror}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ManifestError(str(path), "", f"is not valid YAML{where}: {problem}") from None


def load_manifest(path: Path) -> Manifest:
    return parse_manifest(load_yaml(path), str(path))
