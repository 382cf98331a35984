"""Bot configuration ``config/plugins.yaml`` (DESIGN 2.3), read once and validated.

Precedence, lowest first: built-in defaults, the config file, environment
(``ROSEY_NATS_URL``, ``ROSEY_STATE_DIR``), command-line flags. A ``plugins.<name>`` entry
overrides that plugin's manifest.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from rosey.errors import ConfigError
from rosey.plugins.manifest import (
    GRANT_PATTERN,
    NAME_PATTERN,
    Health,
    Limits,
    Manifest,
    RestartPolicy,
    describe_validation_error,
)

DEFAULT_CONFIG_FILE = Path("config/plugins.yaml")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NatsSettings(_Strict):
    url: str | None = None

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("nats://", "tls://", "ws://", "wss://")):
            raise ValueError("must start with nats://, tls://, ws:// or wss:// (or be null)")
        return value


class LimitsOverride(_Strict):
    memory_mb: int | None = None
    cpu_percent: int | None = None
    max_processes: int | None = None
    open_files: int | None = None


class HealthOverride(_Strict):
    interval_s: float | None = None
    timeout_s: float | None = None
    failure_threshold: int | None = None
    start_timeout_s: float | None = None


class PluginOverride(_Strict):
    """A ``plugins.<name>`` entry: any manifest field it sets wins over the manifest."""

    enabled: bool = True
    restart_policy: RestartPolicy | None = None
    critical: bool | None = None
    dependencies: list[Annotated[str, Field(pattern=NAME_PATTERN)]] | None = None
    permissions: list[Annotated[str, Field(pattern=GRANT_PATTERN)]] | None = None
    limits: LimitsOverride = LimitsOverride()
    health: HealthOverride = HealthOverride()
    stop_timeout_s: float | None = None
    config: dict[str, Any] = {}


class BackoffSettings(_Strict):
    """Restart backoff: ``initial_s * factor**n`` capped at ``max_s``, ± ``jitter`` share."""

    initial_s: Annotated[float, Field(ge=0)] = 0.5
    factor: Annotated[float, Field(ge=1)] = 2.0
    max_s: Annotated[float, Field(ge=0)] = 60.0
    jitter: Annotated[float, Field(ge=0, le=1)] = 0.2
    reset_after_s: Annotated[float, Field(gt=0)] = 60.0


class ErrorRateSettings(_Strict):
    """When a plugin's commands fail too often it is marked unhealthy (not restarted)."""

    #: Seconds of command outcomes the rate is computed over.
    window_s: Annotated[float, Field(gt=0)] = 60.0
    #: Unhealthy when errors / commands is above this share.
    threshold: Annotated[float, Field(ge=0, lt=1)] = 0.5
    #: Fewer commands than this in the window never make a plugin unhealthy.
    min_commands: Annotated[int, Field(ge=1)] = 5


class SecuritySettings(_Strict):
    """Permission enforcement (embedded server only) and the violation policy."""

    #: A plugin with more than this many refused publishes/subscribes within the window is
    #: disabled (0: report only, never disable).
    max_violations: Annotated[int, Field(ge=0)] = 20
    violation_window_s: Annotated[float, Field(gt=0)] = 60.0
    #: Landlock and dropped capabilities for plugin processes where the kernel offers them.
    landlock: bool = True
    #: Who may use ``!plugin list`` / ``status`` / ``logs`` from chat: "everyone" or "admins".
    read_access: Literal["everyone", "admins"] = "everyone"


class BotConfig(_Strict):
    plugins_dir: list[Path] = [Path("plugins")]
    health_check_interval: Annotated[float, Field(gt=0)] = 30.0
    max_crash_count: Annotated[int, Field(ge=0)] = 3
    crash_window_s: Annotated[float, Field(gt=0)] = 600.0
    state_dir: Path = Path(".rosey")
    nats: NatsSettings = NatsSettings()
    admins: list[str] = ["console"]
    backoff: BackoffSettings = BackoffSettings()
    error_rate: ErrorRateSettings = ErrorRateSettings()
    security: SecuritySettings = SecuritySettings()
    plugins: dict[Annotated[str, Field(pattern=NAME_PATTERN)], PluginOverride] = {}

    @field_validator("plugins_dir", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str | Path) else value

    def override_for(self, name: str) -> PluginOverride:
        return self.plugins.get(name, PluginOverride())

    def apply(self, manifest: Manifest) -> Manifest:
        """The manifest with this config's ``plugins.<name>`` entry laid over it."""
        override = self.plugins.get(manifest.name)
        if override is None:
            return manifest
        update: dict[str, Any] = {}
        for field in (
            "restart_policy",
            "critical",
            "dependencies",
            "permissions",
            "stop_timeout_s",
        ):
            value = getattr(override, field)
            if value is not None:
                update[field] = value
        limits = override.limits.model_dump(exclude_none=True)
        if limits:
            update["limits"] = Limits.model_validate(manifest.limits.model_dump() | limits)
        health = override.health.model_dump(exclude_none=True)
        if health:
            update["health"] = Health.model_validate(manifest.health.model_dump() | health)
        if override.config:
            update["config"] = {**manifest.config, **override.config}
        return manifest.model_copy(update=update) if update else manifest


def load_config(
    path: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> BotConfig:
    """Read the config file (optional when ``path`` is None and the default is absent)."""
    env = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    source = str(path or DEFAULT_CONFIG_FILE)
    candidate = path or DEFAULT_CONFIG_FILE
    if path is not None or candidate.exists():
        try:
            loaded = yaml.safe_load(candidate.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(source, "", f"cannot be read: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(source, "", f"is not valid YAML: {exc}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(source, "", "must be a YAML mapping of keys to values")
        data = loaded
        # Relative plugin and state folders are relative to where the bot runs, as in the
        # original spec; nothing to rewrite here.
    if env.get("ROSEY_NATS_URL"):
        data = {**data, "nats": {**(data.get("nats") or {}), "url": env["ROSEY_NATS_URL"]}}
    if env.get("ROSEY_STATE_DIR"):
        data = {**data, "state_dir": env["ROSEY_STATE_DIR"]}
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key == "nats_url":
            data = {**data, "nats": {**(data.get("nats") or {}), "url": value}}
        else:
            data = {**data, key: value}
    try:
        return BotConfig.model_validate(data)
    except ValidationError as exc:
        field, problem = describe_validation_error(exc, BotConfig)[0]
        raise ConfigError(source, field, problem) from None
