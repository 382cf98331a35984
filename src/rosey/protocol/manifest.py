"""A plugin's ``plugin.yaml`` (DESIGN 2.2) as the bot holds it: a contract, so it lives here.

The config (``plugins.<name>`` entries, ``limits_max``), the plugin rules (``rosey.plugins``),
the lifecycle policy and the manager all read it; it sits at the bottom of the import picture
with the other contracts so that none of them has to import upwards.

``Manifest``, ``Limits`` and ``Health`` are records (``rosey.protocol.record``): checked values
without pydantic. The pydantic models that check them are ``rosey.protocol.manifest_schema``,
run in the checker process (``rosey.checker``) for the bot and in-process (the functions
below) for the command line and tests. Off the plugin process's import path: nothing else in
``rosey.protocol`` imports this module (checked by ``.importlinter``), and plugin processes
receive the already checked values from the manager through their bootstrap pipe.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from rosey.protocol.record import Record

if TYPE_CHECKING:
    from pydantic import BaseModel, ValidationError

    from rosey.errors import ManifestError
    from rosey.protocol.problems import Lines

__all__ = [
    "ALLOWED_BY_PATTERN",
    "ALLOWED_GRANTS",
    "COMMAND_PATTERN",
    "ENTRYPOINT_PATTERN",
    "GRANT_PATTERN",
    "LIMIT_FIELDS",
    "NAME_PATTERN",
    "SEMVER_PATTERN",
    "Health",
    "Limits",
    "Manifest",
    "RestartPolicy",
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

#: ``restart_policy``: the one definition (``rosey.lifecycle.policy`` decides with it).
RestartPolicy = Literal["always", "on-failure", "never"]


#: The manifest ``limits`` fields (in order); ``limits_max`` caps each, the config may override.
LIMIT_FIELDS = ("memory_mb", "cpu_percent", "max_processes", "open_files", "data_mb")


def number(value: float) -> str:
    """``1048576`` and ``2.5``, never ``1.04858e+06`` (limits in messages)."""
    return str(int(value)) if float(value).is_integer() else str(value)


_SCHEMA = "rosey.protocol.manifest_schema"


class Limits(Record):
    __schema__ = f"{_SCHEMA}:Limits"

    memory_mb: int = 256
    cpu_percent: int = 50
    max_processes: int = 32
    open_files: int = 256
    #: Quota of the plugin's data folder (enforced by the sandbox).
    data_mb: int = 100


class Health(Record):
    __schema__ = f"{_SCHEMA}:Health"

    interval_s: float = 10.0
    timeout_s: float = 2.0
    failure_threshold: int = 3
    start_timeout_s: float = 15.0


class Manifest(Record):
    __schema__ = f"{_SCHEMA}:Manifest"

    name: str
    version: str
    description: str = ""
    #: ``connector``: joins a chat platform to the bus (DESIGN 2.9); run by the ``connectors:``
    #: section of the bot config, one process per instance, never from a plugins folder alone.
    kind: Literal["plugin", "connector"] = "plugin"
    entrypoint: str
    commands: list[str] = []
    dependencies: list[str] = []
    restart_policy: RestartPolicy = "on-failure"
    critical: bool = False
    permissions: list[str] = []
    limits: Limits = Limits()
    health: Health = Health()
    stop_timeout_s: float = 5.0
    config: dict[str, Any] = {}
    #: The Rosey versions it runs on, a PEP 440 specifier (``>=0.1,<1``); checked at install.
    requires_rosey: str | None = None
    #: PEP 508 strings: the plugin runs in its own Python environment with these packages
    #: (DESIGN 2.10; built by ``rosey.sandbox.environments`` at validate/install time).
    requirements: list[str] = []

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


# In-process checks (the command line, tests): each imports the pydantic models when called.


def describe_validation_error(
    error: ValidationError, root: type[BaseModel] | None = None
) -> list[tuple[str, str]]:
    """``(field, problem)`` pairs in words a person can act on (``problems.describe``)."""
    from rosey.protocol.manifest_schema import describe_validation_error as words

    return words(error, root)


def parse_manifest(data: Any, source: str) -> Manifest:
    """Check already-loaded YAML data; raise ``ManifestError`` for the first problem."""
    errors = manifest_problems(data, source)
    if errors:
        raise errors[0]
    return Manifest.model_validate(data)


def manifest_problems(data: Any, source: str, lines: Lines | None = None) -> list[ManifestError]:
    """Every problem of a manifest, each as a ``ManifestError`` naming the file and field (and
    its line, given the file's ``lines`` from ``rosey.protocol.problems.load_yaml_lines``)."""
    from rosey.protocol.manifest_schema import manifest_problems as problems

    return problems(data, source, lines)


def load_yaml(path: Path) -> Any:
    """Read a YAML file, translating read and syntax errors into ``ManifestError``."""
    import yaml

    from rosey.errors import ManifestError

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
