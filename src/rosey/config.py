"""Bot configuration ``config/plugins.yaml`` (DESIGN 2.3), read once and checked.

Precedence, lowest first: built-in defaults, the config file, environment
(``ROSEY_NATS_URL``, ``ROSEY_STATE_DIR``), command-line flags. A ``plugins.<name>`` entry
overrides that plugin's manifest.

The classes here are records (``rosey.protocol.record``): what the bot runs with, without
pydantic. ``rosey.config_schema`` holds the pydantic models that check them; ``rosey run``
checks in the checker process (``rosey.checker``), the command line and tests in-process
(``load_config``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from rosey.errors import ConfigError
from rosey.protocol.admins import AdminEntry, parse_admin
from rosey.protocol.manifest import Health, Limits, Manifest, RestartPolicy, number
from rosey.protocol.record import Record

if TYPE_CHECKING:
    from rosey.protocol.problems import Lines

DEFAULT_CONFIG_FILE = Path("config/plugins.yaml")
#: ``HOST:PORT`` with a name, an IPv4 address or a bracketed IPv6 address.
LISTEN_PATTERN = r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$"
#: Settings of a connector that hold a secret: given as ``env:VAR`` or ``file:PATH``, never inline.
SECRET_SETTINGS = ("password", "channel_password", "token", "secret")
_SCHEMA = "rosey.config_schema"


class NatsSettings(Record):
    __schema__ = f"{_SCHEMA}:NatsSettings"

    url: str | None = None


class LimitsOverride(Record):
    """``plugins.<name>.limits``: same ranges as the manifest's, and at most ``limits_max``."""

    __schema__ = f"{_SCHEMA}:LimitsOverride"

    memory_mb: int | None = None
    cpu_percent: int | None = None
    max_processes: int | None = None
    open_files: int | None = None
    data_mb: int | None = None


class LimitsMax(Record):
    """``limits_max``: the most any plugin gets (DESIGN 2.3), whatever its manifest asks.

    A manifest asking more is capped (logged, and shown in status); a ``plugins.<name>`` entry
    asking more is a configuration error. The ranges are what the kernel accepts.
    """

    __schema__ = f"{_SCHEMA}:LimitsMax"

    memory_mb: int = 1024
    cpu_percent: int = 100
    max_processes: int = 64
    open_files: int = 1024
    data_mb: int = 1024
    stop_timeout_s: float = 30.0
    #: Caps ``health.start_timeout_s``: the bot is up only once every plugin is ready or failed.
    start_timeout_s: float = 60.0


class HealthOverride(Record):
    __schema__ = f"{_SCHEMA}:HealthOverride"

    interval_s: float | None = None
    timeout_s: float | None = None
    failure_threshold: int | None = None
    start_timeout_s: float | None = None


class PluginOverride(Record):
    """A ``plugins.<name>`` entry: any manifest field it sets wins over the manifest."""

    __schema__ = f"{_SCHEMA}:PluginOverride"

    enabled: bool = True
    restart_policy: RestartPolicy | None = None
    critical: bool | None = None
    dependencies: list[str] | None = None
    permissions: list[str] | None = None
    limits: LimitsOverride = LimitsOverride()
    health: HealthOverride = HealthOverride()
    stop_timeout_s: float | None = None
    config: dict[str, Any] = {}


class BackoffSettings(Record):
    """Restart backoff: ``initial_s * factor**n`` capped at ``max_s``, ± ``jitter`` share."""

    __schema__ = f"{_SCHEMA}:BackoffSettings"

    initial_s: float = 0.5
    factor: float = 2.0
    max_s: float = 60.0
    jitter: float = 0.2
    reset_after_s: float = 60.0


class ErrorRateSettings(Record):
    """When a plugin's commands fail too often it is marked unhealthy (not restarted)."""

    __schema__ = f"{_SCHEMA}:ErrorRateSettings"

    #: Seconds of command outcomes the rate is computed over.
    window_s: float = 60.0
    #: Unhealthy when errors / commands is above this share.
    threshold: float = 0.5
    #: Fewer commands than this in the window never make a plugin unhealthy.
    min_commands: int = 5


class BrokerSettings(Record):
    """Quotas on the embedded nats-server (``security.broker``; docs/security.md, "How the
    broker layer works").

    ``plugin_*``: each plugin's account (connections; subscriptions per connection; largest
    message; JetStream storage of a plugin with ``storage``, also its bucket's size).
    ``server_*``: caps of the whole server; ``server_memory_mb`` is its memory budget (cgroup
    where the host has one, ``GOMEMLIMIT`` always).
    """

    __schema__ = f"{_SCHEMA}:BrokerSettings"

    plugin_connections: int = 4
    plugin_subscriptions: int = 1000
    plugin_payload_kb: int = 1024
    plugin_storage_mb: int = 64
    server_connections: int = 1024
    server_memory_mb: int = 512


class SecuritySettings(Record):
    """Permission enforcement (embedded server only) and the violation policy."""

    __schema__ = f"{_SCHEMA}:SecuritySettings"

    #: A plugin with more than this many refused publishes/subscribes within the window is
    #: disabled (0: report only, never disable).
    max_violations: int = 20
    violation_window_s: float = 60.0
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
    plugin_uid_range: tuple[int, int] = (61184, 65519)
    #: A seccomp filter for what Landlock cannot see (sandbox/seccomp.py).
    seccomp: bool = True
    #: Data folders as quota filesystems of ``limits.data_mb`` (root with loop devices);
    #: false, or elsewhere: each file capped and folders measured (sandbox/quota.py).
    data_quota: bool = True
    #: Who may use ``!plugin list`` / ``status`` / ``logs`` from chat: "everyone" or "admins".
    read_access: Literal["everyone", "admins"] = "everyone"
    #: Quotas on the embedded broker.
    broker: BrokerSettings = BrokerSettings()


class RuntimeSettings(Record):
    """How plugin processes are started (``runtime``; docs/sandbox.md, "The fork server")."""

    __schema__ = f"{_SCHEMA}:RuntimeSettings"

    #: Fork plugins of the bot's environment from a preloaded fork server (milliseconds, a few
    #: MiB each) instead of starting a new interpreter for each; false: always spawn plainly.
    fork_server: bool = True


class RouterSettings(Record):
    """How the router shares itself between plugins."""

    __schema__ = f"{_SCHEMA}:RouterSettings"

    #: Commands in flight to one plugin before the next is answered "busy" at once, so one
    #: plugin that never answers cannot hold the others' commands (or ``!plugin``) up.
    max_in_flight_per_plugin: int = 128


class HttpSettings(Record):
    """``http``: the HTTP face, dashboard and metrics (DESIGN 2.11); ``http: null`` turns it off.

    ``listen`` is ``HOST:PORT`` (port 0: any free port, shown in runtime.json); ``null`` turns
    it off too. Anything but a loopback address exposes the API to the network, guarded by the
    token alone (no TLS): put a reverse proxy with TLS in front for that.
    """

    __schema__ = f"{_SCHEMA}:HttpSettings"

    listen: str | None = "127.0.0.1:8765"


class ConnectorEntry(Record):
    """``connectors.<instance>`` (DESIGN 2.9): a ``type`` and that type's settings.

    ``type`` is ``cytube`` (built in), or the folder name (in a plugins folder) or path of a
    plugin folder whose manifest says ``kind: connector``. The other keys of the entry are the
    connector's ``settings``, checked by the connector itself; only secrets are checked by the
    config, so that a password written inline is refused before it is stored anywhere.
    """

    __schema__ = f"{_SCHEMA}:ConnectorEntry"
    __extra__ = "settings"

    type: str
    settings: dict[str, Any] = {}


class BotConfig(Record):
    __schema__ = f"{_SCHEMA}:BotConfig"

    plugins_dir: list[Path] = [Path("plugins")]
    health_check_interval: float = 30.0
    #: How long a reload's new instance must stay alive and answer pings before it takes over.
    reload_probation_s: float = 1.0
    max_crash_count: int = 3
    crash_window_s: float = 600.0
    state_dir: Path = Path(".rosey")
    nats: NatsSettings = NatsSettings()
    admins: list[str] = ["console:console"]
    backoff: BackoffSettings = BackoffSettings()
    error_rate: ErrorRateSettings = ErrorRateSettings()
    security: SecuritySettings = SecuritySettings()
    router: RouterSettings = RouterSettings()
    runtime: RuntimeSettings = RuntimeSettings()
    http: HttpSettings | None = HttpSettings()
    plugins: dict[str, PluginOverride] = {}
    limits_max: LimitsMax = LimitsMax()
    #: Chat connectors, by instance name (DESIGN 2.9): each a supervised process of its own.
    connectors: dict[str, ConnectorEntry] = {}

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
            update["limits"] = Limits(**(manifest.limits.model_dump() | limits))
        health = override.health.model_dump(exclude_none=True)
        if health:
            update["health"] = Health(**(manifest.health.model_dump() | health))
        if override.config:
            update["config"] = {**manifest.config, **override.config}
        return manifest.model_copy(update=update) if update else manifest


def load_config(
    path: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> BotConfig:
    """Read the config file (optional when ``path`` is None and the default is absent) and
    check it in this process (pydantic); ``ConfigProblems`` lists every problem at once."""
    env = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    lines: Lines = {}
    source = str(path or DEFAULT_CONFIG_FILE)
    candidate = path or DEFAULT_CONFIG_FILE
    if path is not None or candidate.exists():
        from rosey.protocol.problems import YamlFileError, load_yaml_lines

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
    from rosey.config_schema import check_config

    return check_config(data, source, file_lines)
