"""The ``plugin.yaml`` model (DESIGN 2.2), validated at the edge.

Lives on the manager side (pydantic, YAML): plugin processes never import it, they receive
the already validated values from the manager through their bootstrap pipe.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from rosey.errors import ManifestError

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
RestartPolicy = Literal["always", "on-failure", "never"]
Seconds = Annotated[float, Field(gt=0, le=86400)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Limits(_Strict):
    memory_mb: Annotated[int, Field(ge=16, le=1024 * 1024)] = 256
    cpu_percent: Annotated[int, Field(ge=1, le=100 * 1024)] = 50
    max_processes: Annotated[int, Field(ge=1, le=4096)] = 32
    open_files: Annotated[int, Field(ge=16, le=1024 * 1024)] = 256


class Health(_Strict):
    interval_s: Seconds = 10.0
    timeout_s: Seconds = 2.0
    failure_threshold: Annotated[int, Field(ge=1, le=100)] = 3
    start_timeout_s: Seconds = 15.0


class Manifest(_Strict):
    name: PluginName
    version: Annotated[str, Field(pattern=SEMVER_PATTERN)]
    description: str = ""
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
