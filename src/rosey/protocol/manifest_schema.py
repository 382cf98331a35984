"""The pydantic models that check ``plugin.yaml`` (DESIGN 2.2); ``rosey.protocol.manifest`` holds
what they make (records) and the patterns.

Imported only where a manifest is checked: the checker process (``rosey.checker``), the command
line and tests; never by the running bot, nor on the plugin process's import path. Each model
names its record in ``__record__`` and has its record's name, fields and defaults (a test
keeps them equal), so the JSON Schema (``rosey schema plugin``) keeps its names.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from rosey.errors import ManifestError
from rosey.protocol import manifest as records
from rosey.protocol.manifest import (
    ALLOWED_BY_PATTERN,
    COMMAND_PATTERN,
    ENTRYPOINT_PATTERN,
    GRANT_PATTERN,
    NAME_PATTERN,
    SEMVER_PATTERN,
    RestartPolicy,
)
from rosey.protocol.problems import Lines, describe
from rosey.protocol.record import Record

__all__ = [
    "CpuPercent",
    "DataMb",
    "Health",
    "Limits",
    "Manifest",
    "MaxProcesses",
    "MemoryMb",
    "OpenFiles",
    "PluginName",
    "Seconds",
    "describe_validation_error",
    "manifest_problems",
]

PluginName = Annotated[str, Field(pattern=NAME_PATTERN)]
Seconds = Annotated[float, Field(gt=0, le=86400)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# The range of each limit, what the kernel accepts: one definition for the manifest's
# ``limits``, the config's ``plugins.<name>.limits`` and its ``limits_max`` (rosey.config).
MemoryMb = Annotated[int, Field(ge=16, le=1024 * 1024)]
CpuPercent = Annotated[int, Field(ge=1, le=100 * 1024)]
MaxProcesses = Annotated[int, Field(ge=1, le=4096)]
OpenFiles = Annotated[int, Field(ge=16, le=1024 * 1024)]
DataMb = Annotated[int, Field(ge=1, le=1024 * 1024)]


class Limits(_Strict):
    __record__: ClassVar[type[Record]] = records.Limits

    memory_mb: MemoryMb = 256
    cpu_percent: CpuPercent = 50
    max_processes: MaxProcesses = 32
    open_files: OpenFiles = 256
    data_mb: DataMb = 100


class Health(_Strict):
    __record__: ClassVar[type[Record]] = records.Health

    interval_s: Seconds = 10.0
    timeout_s: Seconds = 2.0
    failure_threshold: Annotated[int, Field(ge=1, le=100)] = 3
    start_timeout_s: Seconds = 15.0


class Manifest(_Strict):
    __record__: ClassVar[type[Record]] = records.Manifest

    name: PluginName
    version: Annotated[str, Field(pattern=SEMVER_PATTERN)]
    description: str = ""
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


def describe_validation_error(
    error: ValidationError, root: type[BaseModel] | None = None
) -> list[tuple[str, str]]:
    """``(field, problem)`` pairs in words a person can act on (``problems.describe``)."""
    return [
        (p.field, p.problem) for p in describe(error, root or Manifest, None, ALLOWED_BY_PATTERN)
    ]


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
