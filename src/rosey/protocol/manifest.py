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

__all__ = [
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

    @field_validator("commands", "dependencies", "permissions")
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


_ALLOWED_BY_PATTERN = {
    NAME_PATTERN: "a lowercase name: a letter, then up to 31 letters, digits or '_'",
    COMMAND_PATTERN: "a lowercase command word: letters, digits, '_' or '-', up to 32",
    SEMVER_PATTERN: "a semantic version such as 1.0.0",
    ENTRYPOINT_PATTERN: "'module:Class', e.g. dice:DicePlugin",
    GRANT_PATTERN: f"one of {ALLOWED_GRANTS}",
}


def describe_validation_error(
    error: ValidationError, root: type[BaseModel] | None = None
) -> list[tuple[str, str]]:
    """``(field, problem)`` pairs in words a person can act on."""
    problems: list[tuple[str, str]] = []
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"]) or "(top level)"
        kind = item["type"]
        ctx = item.get("ctx") or {}
        if kind == "extra_forbidden":
            problem = "unknown key; allowed keys here: " + _allowed_keys(
                root or Manifest, item["loc"]
            )
        elif kind == "missing":
            problem = "is required"
        elif kind == "string_pattern_mismatch":
            pattern = str(ctx.get("pattern", ""))
            problem = f"{item['input']!r} is not allowed; expected " + _ALLOWED_BY_PATTERN.get(
                pattern, f"a value matching {pattern}"
            )
        elif kind == "literal_error":
            problem = f"{item['input']!r} is not allowed; expected {ctx.get('expected')}"
        elif kind == "value_error":
            # Our own validators write the whole sentence; pydantic only prefixes it.
            problem = str(item["msg"]).removeprefix("Value error, ")
        else:
            problem = f"{item['msg']} (got {item['input']!r})"
        problems.append((field, problem))
    return problems


def _allowed_keys(root: type[BaseModel], loc: tuple[int | str, ...]) -> str:
    """The keys of the model that holds the field at ``loc`` (walking dicts of models too)."""
    model: type[BaseModel] = root
    parts = list(loc[:-1])
    while parts:
        part = parts.pop(0)
        field = model.model_fields.get(str(part))
        if field is None:
            break
        annotation = field.annotation
        args = getattr(annotation, "__args__", ())
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
        elif args and isinstance(args[-1], type) and issubclass(args[-1], BaseModel):
            model = args[-1]  # dict[str, Model]: the next part is the key
            if parts:
                parts.pop(0)
        else:
            break
    return ", ".join(model.model_fields)


def parse_manifest(data: Any, source: str) -> Manifest:
    """Validate already-loaded YAML data; raise ``ManifestError`` for the first problem."""
    errors = manifest_problems(data, source)
    if errors:
        raise errors[0]
    return Manifest.model_validate(data)


def manifest_problems(data: Any, source: str) -> list[ManifestError]:
    """Every problem of a manifest, each as a ``ManifestError`` naming the file and field."""
    if not isinstance(data, dict):
        return [ManifestError(source, "", "must be a YAML mapping of keys to values")]
    try:
        Manifest.model_validate(data)
    except ValidationError as exc:
        return [
            ManifestError(source, field, problem)
            for field, problem in describe_validation_error(exc)
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
