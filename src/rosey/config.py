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

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator

from rosey.errors import ConfigError, ConfigProblems
from rosey.protocol.admins import AdminEntry, parse_admin
from rosey.protocol.manifest import (
    ALLOWED_BY_PATTERN,
    GRANT_PATTERN,
    NAME_PATTERN,
    CpuPercent,
    DataMb,
    Health,
    Limits,
    Manifest,
    MaxProcesses,
    MemoryMb,
    OpenFiles,
    RestartPolicy,
    number,
)
from rosey.protocol.problems import Lines, YamlFileError, describe, line_of, load_yaml_lines

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
    """``plugins.<name>.limits``: same ranges as the manifest's, and at most ``limits_max``."""

    memory_mb: MemoryMb | None = None
    cpu_percent: CpuPercent | None = None
    max_processes: MaxProcesses | None = None
    open_files: OpenFiles | None = None
    data_mb: DataMb | None = None


class LimitsMax(_Strict):
    """``limits_max``: the most any plugin gets (DESIGN 2.3), whatever its manifest asks.

    A manifest asking more is capped (logged, and shown in status); a ``plugins.<name>`` entry
    asking more is a configuration error. The ranges are what the kernel accepts.
    """

    memory_mb: MemoryMb = 1024
    cpu_percent: CpuPercent = 100
    max_processes: MaxProcesses = 64
    open_files: OpenFiles = 1024
    data_mb: DataMb = 1024
    stop_timeout_s: Annotated[float, Field(gt=0, le=86400)] = 30.0
    #: Caps ``health.start_timeout_s``: the bot is up only once every plugin is ready or failed.
    start_timeout_s: Annotated[float, Field(gt=0, le=86400)] = 60.0


def _admin_entry(text: str) -> str:
    parse_admin(text)  # ValueError says what is allowed
    return text


#: An ``admins`` entry: ``platform:user`` or ``platform:rank>=N`` (security/admins.py).
AdminText = Annotated[str, AfterValidator(_admin_entry)]


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
    stop_timeout_s: Annotated[float, Field(gt=0, le=86400)] | None = None
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


class BrokerSettings(_Strict):
    """Quotas on the embedded nats-server (``security.broker``; docs/security.md, "How the
    broker layer works").

    ``plugin_*``: each plugin's account (connections; subscriptions per connection; largest
    message; JetStream storage of a plugin with ``storage``, also its bucket's size).
    ``server_*``: caps of the whole server; ``server_memory_mb`` is its memory budget (cgroup
    where the host has one, ``GOMEMLIMIT`` always).
    """

    plugin_connections: Annotated[int, Field(ge=2, le=1000)] = 4
    plugin_subscriptions: Annotated[int, Field(ge=10, le=100000)] = 1000
    plugin_payload_kb: Annotated[int, Field(ge=1, le=8192)] = 1024
    plugin_storage_mb: Annotated[int, Field(ge=1, le=102400)] = 64
    server_connections: Annotated[int, Field(ge=16, le=100000)] = 1024
    server_memory_mb: Annotated[int, Field(ge=64)] = 512


class SecuritySettings(_Strict):
    """Permission enforcement (embedded server only) and the violation policy."""

    #: A plugin with more than this many refused publishes/subscribes within the window is
    #: disabled (0: report only, never disable).
    max_violations: Annotated[int, Field(ge=0)] = 20
    violation_window_s: Annotated[float, Field(gt=0)] = 60.0
    #: Landlock and dropped capabilities for plugin processes where the kernel offers them.
    landlock: bool = True
    #: Each plugin in its own PID namespace: nothing outside its tree can be named (prlimit,
    #: signals, getsid...), and its init's death ends the whole tree (sandbox/namespaces.py).
    pid_namespace: bool = True
    #: Each plugin in its own IPC namespace: SysV IPC and POSIX queues are its own.
    ipc_namespace: bool = True
    #: When the bot runs as root: a uid/gid of its own per plugin (sandbox/uids.py).
    plugin_uids: bool = True
    #: The uids plugins get, inclusive (systemd's DynamicUser range by default).
    plugin_uid_range: tuple[
        Annotated[int, Field(ge=1, le=4294967294)], Annotated[int, Field(ge=1, le=4294967294)]
    ] = (61184, 65519)
    #: A seccomp filter for what Landlock cannot see (sandbox/seccomp.py).
    seccomp: bool = True
    #: Data folders as quota filesystems of ``limits.data_mb`` (root with loop devices);
    #: false, or elsewhere: each file capped and folders measured (sandbox/quota.py).
    data_quota: bool = True
    #: Who may use ``!plugin list`` / ``status`` / ``logs`` from chat: "everyone" or "admins".
    read_access: Literal["everyone", "admins"] = "everyone"
    #: Quotas on the embedded broker.
    broker: BrokerSettings = BrokerSettings()


class RuntimeSettings(_Strict):
    """How plugin processes are started (``runtime``; docs/sandbox.md, "The fork server")."""

    #: Fork plugins of the bot's environment from a preloaded fork server (milliseconds, a few
    #: MiB each) instead of starting a new interpreter for each; false: always spawn plainly.
    fork_server: bool = True


class RouterSettings(_Strict):
    """How the router shares itself between plugins."""

    #: Commands in flight to one plugin before the next is answered "busy" at once, so one
    #: plugin that never answers cannot hold the others' commands (or ``!plugin``) up.
    max_in_flight_per_plugin: Annotated[int, Field(ge=1, le=2000)] = 128


#: ``HOST:PORT`` with a name, an IPv4 address or a bracketed IPv6 address.
LISTEN_PATTERN = r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$"


class HttpSettings(_Strict):
    """``http``: the HTTP face, dashboard and metrics (DESIGN 2.11); ``http: null`` turns it off.

    ``listen`` is ``HOST:PORT`` (port 0: any free port, shown in runtime.json); ``null`` turns
    it off too. Anything but a loopback address exposes the API to the network, guarded by the
    token alone (no TLS): put a reverse proxy with TLS in front for that.
    """

    listen: Annotated[str, Field(pattern=LISTEN_PATTERN)] | None = "127.0.0.1:8765"

    @field_validator("listen")
    @classmethod
    def _port(cls, value: str | None) -> str | None:
        if value is not None and int(value.rpartition(":")[2]) > 65535:
            raise ValueError("the port must be 0..65535 (0: any free port)")
        return value


#: Settings of a connector that hold a secret: given as ``env:VAR`` or ``file:PATH``, never inline.
SECRET_SETTINGS = ("password", "channel_password", "token", "secret")


class ConnectorEntry(BaseModel):
    """``connectors.<instance>`` (DESIGN 2.9): a ``type`` and that type's settings.

    ``type`` is ``cytube`` (built in), or the folder name (in a plugins folder) or path of a
    plugin folder whose manifest says ``kind: connector``. The other keys are the connector's
    settings, checked by the connector itself; only secrets are checked here, so that a password
    written inline is refused before it is stored anywhere.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    type: Annotated[str, Field(min_length=1)]

    @property
    def settings(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

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
    plugins_dir: list[Path] = [Path("plugins")]
    health_check_interval: Annotated[float, Field(gt=0)] = 30.0
    #: How long a reload's new instance must stay alive and answer pings before it takes over.
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
    #: Chat connectors, by instance name (DESIGN 2.9): each a supervised process of its own.
    connectors: dict[Annotated[str, Field(pattern=NAME_PATTERN)], ConnectorEntry] = {}

    @field_validator("plugins_dir", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str | Path) else value

    @property
    def admin_entries(self) -> tuple[AdminEntry, ...]:
        return tuple(parse_admin(text) for text in self.admins)

    def bound_problems(self) -> list[tuple[str, str]]:
        """``(field, problem)`` for every ``plugins.<name>`` value above ``limits_max``."""
        caps = self.limits_max
        problems: list[tuple[str, str]] = []
        for name, entry in sorted(self.plugins.items()):
            asked = {f"limits.{k}": v for k, v in entry.limits.model_dump().items()}
            asked["stop_timeout_s"] = entry.stop_timeout_s
            asked["health.start_timeout_s"] = entry.health.start_timeout_s
            for field, value in asked.items():
                cap = getattr(caps, field.rpartition(".")[2])
                if value is not None and value > cap:
                    problems.append(
                        (
                            f"plugins.{name}.{field}",
                            f"{number(value)} is above limits_max.{field.rpartition('.')[2]} "
                            f"({number(cap)}); allowed: at most {number(cap)} "
                            "(or raise limits_max)",
                        )
                    )
        return problems

    def override_for(self, name: str) -> PluginOverride:
        return self.plugins.get(name, PluginOverride())

    def apply(self, manifest: Manifest) -> Manifest:
        """The manifest with this config's ``plugins.<name>`` entry laid over it.

        Not yet within the operator's bounds (``critical``, ``limits_max``): what a plugin runs
        with is ``rosey.plugins.bounds.bound`` of this, as the manager does.
        """
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
    lines: Lines = {}
    source = str(path or DEFAULT_CONFIG_FILE)
    candidate = path or DEFAULT_CONFIG_FILE
    if path is not None or candidate.exists():
        try:
            loaded, lines = load_yaml_lines(candidate)
        except YamlFileError as exc:
            raise ConfigError(source, "", exc.problem) from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(source, "", "must be a YAML mapping of keys to values", line=1)
        data = loaded
        # Relative plugin and state folders are relative to where the bot runs, as in the
        # original spec; nothing to rewrite here.
    replaced: set[str] = set()  # top-level keys set by the environment or a flag, not the file
    if env.get("ROSEY_NATS_URL"):
        data = {**data, "nats": {**(data.get("nats") or {}), "url": env["ROSEY_NATS_URL"]}}
        replaced.add("nats")
    if env.get("ROSEY_STATE_DIR"):
        data = {**data, "state_dir": env["ROSEY_STATE_DIR"]}
        replaced.add("state_dir")
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key == "nats_url":
            data = {**data, "nats": {**(data.get("nats") or {}), "url": value}}
            replaced.add("nats")
        else:
            data = {**data, key: value}
            replaced.add(key)
    file_lines = {loc: line for loc, line in lines.items() if str(loc[0]) not in replaced}
    try:
        config = BotConfig.model_validate(data)
    except ValidationError as exc:
        problems = describe(exc, BotConfig, file_lines, ALLOWED_BY_PATTERN)
        raise ConfigProblems(
            [ConfigError(source, field, problem, line=line) for field, problem, line in problems]
        ) from None
    bounds = config.bound_problems()
    if bounds:
        raise ConfigProblems(
            [
                ConfigError(
                    source, field, problem, line=line_of(file_lines, tuple(field.split(".")))
                )
                for field, problem in bounds
            ]
        )
    return config
