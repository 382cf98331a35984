"""The pydantic models that check the bot configuration (DESIGN 2.3); ``rosey.config`` holds
what they make (records), and reads the file.

Imported only where the config is checked: the checker process (``rosey.checker``), the
command line and tests; never by the running bot. Each model names its record in
``__record__`` and has its record's name, fields and defaults (a test keeps them equal), so
the JSON Schema (``rosey schema config``) keeps its names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator

from rosey import config as records
from rosey.config import LISTEN_PATTERN, SECRET_SETTINGS
from rosey.errors import ConfigError, ConfigProblems
from rosey.protocol.admins import parse_admin
from rosey.protocol.manifest import ALLOWED_BY_PATTERN, GRANT_PATTERN, NAME_PATTERN, RestartPolicy
from rosey.protocol.manifest_schema import CpuPercent, DataMb, MaxProcesses, MemoryMb, OpenFiles
from rosey.protocol.problems import Lines, describe, line_of
from rosey.protocol.record import Record, to_record

__all__ = ["BotConfig", "check_config"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NatsSettings(_Strict):
    __record__: ClassVar[type[Record]] = records.NatsSettings

    url: str | None = None

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("nats://", "tls://", "ws://", "wss://")):
            raise ValueError("must start with nats://, tls://, ws:// or wss:// (or be null)")
        return value


class LimitsOverride(_Strict):
    __doc__ = records.LimitsOverride.__doc__

    __record__: ClassVar[type[Record]] = records.LimitsOverride

    memory_mb: MemoryMb | None = None
    cpu_percent: CpuPercent | None = None
    max_processes: MaxProcesses | None = None
    open_files: OpenFiles | None = None
    data_mb: DataMb | None = None


class LimitsMax(_Strict):
    __doc__ = records.LimitsMax.__doc__

    __record__: ClassVar[type[Record]] = records.LimitsMax

    memory_mb: MemoryMb = 1024
    cpu_percent: CpuPercent = 100
    max_processes: MaxProcesses = 64
    open_files: OpenFiles = 1024
    data_mb: DataMb = 1024
    stop_timeout_s: Annotated[float, Field(gt=0, le=86400)] = 30.0
    start_timeout_s: Annotated[float, Field(gt=0, le=86400)] = 60.0


def _admin_entry(text: str) -> str:
    parse_admin(text)  # ValueError says what is allowed
    return text


#: An ``admins`` entry: ``platform:user`` or ``platform:rank>=N`` (security/admins.py).
AdminText = Annotated[str, AfterValidator(_admin_entry)]


class HealthOverride(_Strict):
    __record__: ClassVar[type[Record]] = records.HealthOverride

    interval_s: float | None = None
    timeout_s: float | None = None
    failure_threshold: int | None = None
    start_timeout_s: float | None = None


class PluginOverride(_Strict):
    __doc__ = records.PluginOverride.__doc__

    __record__: ClassVar[type[Record]] = records.PluginOverride

    enabled: bool = True
    restart_policy: RestartPolicy | None = None
    critical: bool | None = None
    dependencies: list[Annotated[str, Field(pattern=NAME_PATTERN)]] | None = None
    permissions: list[Annotated[str, Field(pattern=GRANT_PATTERN)]] | None = None
    limits: LimitsOverride = LimitsOverride()
    health: HealthOverride = HealthOverride()
    stop_timeout_s: Annotated[float, Field(gt=0, le=86400)] | None = None
    config: dict[str, Any] = {}


class BackoffSettings(_Strict):
    __doc__ = records.BackoffSettings.__doc__

    __record__: ClassVar[type[Record]] = records.BackoffSettings

    initial_s: Annotated[float, Field(ge=0)] = 0.5
    factor: Annotated[float, Field(ge=1)] = 2.0
    max_s: Annotated[float, Field(ge=0)] = 60.0
    jitter: Annotated[float, Field(ge=0, le=1)] = 0.2
    reset_after_s: Annotated[float, Field(gt=0)] = 60.0


class ErrorRateSettings(_Strict):
    __doc__ = records.ErrorRateSettings.__doc__

    __record__: ClassVar[type[Record]] = records.ErrorRateSettings

    window_s: Annotated[float, Field(gt=0)] = 60.0
    threshold: Annotated[float, Field(ge=0, lt=1)] = 0.5
    min_commands: Annotated[int, Field(ge=1)] = 5


class BrokerSettings(_Strict):
    __doc__ = records.BrokerSettings.__doc__

    __record__: ClassVar[type[Record]] = records.BrokerSettings

    plugin_connections: Annotated[int, Field(ge=2, le=1000)] = 4
    plugin_subscriptions: Annotated[int, Field(ge=10, le=100000)] = 1000
    plugin_payload_kb: Annotated[int, Field(ge=1, le=8192)] = 1024
    plugin_storage_mb: Annotated[int, Field(ge=1, le=102400)] = 64
    server_connections: Annotated[int, Field(ge=16, le=100000)] = 1024
    server_memory_mb: Annotated[int, Field(ge=64)] = 512


class SecuritySettings(_Strict):
    __doc__ = records.SecuritySettings.__doc__

    __record__: ClassVar[type[Record]] = records.SecuritySettings

    max_violations: Annotated[int, Field(ge=0)] = 20
    violation_window_s: Annotated[float, Field(gt=0)] = 60.0
    landlock: bool = True
    pid_namespace: bool = True
    ipc_namespace: bool = True
    plugin_uids: bool = True
    plugin_uid_range: tuple[
        Annotated[int, Field(ge=1, le=4294967294)], Annotated[int, Field(ge=1, le=4294967294)]
    ] = (61184, 65519)
    seccomp: bool = True
    data_quota: bool = True
    read_access: Literal["everyone", "admins"] = "everyone"
    broker: BrokerSettings = BrokerSettings()


class RuntimeSettings(_Strict):
    __doc__ = records.RuntimeSettings.__doc__

    __record__: ClassVar[type[Record]] = records.RuntimeSettings

    fork_server: bool = True


class RouterSettings(_Strict):
    __doc__ = records.RouterSettings.__doc__

    __record__: ClassVar[type[Record]] = records.RouterSettings

    max_in_flight_per_plugin: Annotated[int, Field(ge=1, le=2000)] = 128


class HttpSettings(_Strict):
    __doc__ = records.HttpSettings.__doc__

    __record__: ClassVar[type[Record]] = records.HttpSettings

    listen: Annotated[str, Field(pattern=LISTEN_PATTERN)] | None = "127.0.0.1:8765"

    @field_validator("listen")
    @classmethod
    def _port(cls, value: str | None) -> str | None:
        if value is not None and int(value.rpartition(":")[2]) > 65535:
            raise ValueError("the port must be 0..65535 (0: any free port)")
        return value


class ConnectorEntry(BaseModel):
    __doc__ = records.ConnectorEntry.__doc__

    __record__: ClassVar[type[Record]] = records.ConnectorEntry

    model_config = ConfigDict(extra="allow", frozen=True)

    type: Annotated[str, Field(min_length=1)]

    @field_validator("type")
    @classmethod
    def _type(cls, value: str) -> str:
        return value.strip()

    def model_post_init(self, __context: Any) -> None:
        for key, value in (self.model_extra or {}).items():
            secret = key in SECRET_SETTINGS or key.endswith(tuple(f"_{s}" for s in SECRET_SETTINGS))
            inline = value is not None and not (
                isinstance(value, str) and value.startswith(("env:", "file:"))
            )
            if secret and inline:
                # The message never quotes the value: it is the secret itself.
                raise ValueError(
                    f"{key}: a secret is given as env:VARIABLE or file:/path/to/file, never inline"
                )


class BotConfig(_Strict):
    __record__: ClassVar[type[Record]] = records.BotConfig

    plugins_dir: list[Path] = [Path("plugins")]
    health_check_interval: Annotated[float, Field(gt=0)] = 30.0
    reload_probation_s: Annotated[float, Field(ge=0, le=300)] = 1.0
    max_crash_count: Annotated[int, Field(ge=0)] = 3
    crash_window_s: Annotated[float, Field(gt=0)] = 600.0
    state_dir: Path = Path(".rosey")
    nats: NatsSettings = NatsSettings()
    admins: list[AdminText] = ["console:console"]
    backoff: BackoffSettings = BackoffSettings()
    error_rate: ErrorRateSettings = ErrorRateSettings()
    security: SecuritySettings = SecuritySettings()
    router: RouterSettings = RouterSettings()
    runtime: RuntimeSettings = RuntimeSettings()
    http: HttpSettings | None = HttpSettings()
    plugins: dict[Annotated[str, Field(pattern=NAME_PATTERN)], PluginOverride] = {}
    limits_max: LimitsMax = LimitsMax()
    connectors: dict[Annotated[str, Field(pattern=NAME_PATTERN)], ConnectorEntry] = {}

    @field_validator("plugins_dir", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str | Path) else value


def check_config(data: dict[str, Any], source: str, lines: Lines) -> records.BotConfig:
    """``data`` (the file's, with the environment and flags laid over it) checked: the config
    record, or ``ConfigProblems`` with every problem at once (``lines``: the file's lines of the
    keys it still holds)."""
    try:
        config = BotConfig.model_validate(data)
    except ValidationError as exc:
        problems = describe(exc, BotConfig, lines, ALLOWED_BY_PATTERN)
        raise ConfigProblems(
            [ConfigError(source, field, problem, line=line) for field, problem, line in problems]
        ) from None
    checked: records.BotConfig = to_record(config)
    bounds = checked.bound_problems()
    if bounds:
        raise ConfigProblems(
            [
                ConfigError(source, field, problem, line=line_of(lines, tuple(field.split("."))))
                for field, problem in bounds
            ]
        )
    return checked
