"""The ``connectors:`` section of the bot config → connector instances the manager supervises.

A connector is a plugin folder whose manifest says ``kind: connector`` (DESIGN 2.9). Each
``connectors.<instance>`` entry runs that folder as a process of its own, named by the instance:
the manifest with ``name`` set to the instance and the entry's settings (secrets resolved) laid
over its ``config``. So an instance has everything a plugin has (states, restart policy,
backoff, health, limits, logs, its own broker account) and ``rosey plugin status/restart/logs
<instance>`` work on it.

``type: cytube`` is the built-in folder ``rosey/connectors/cytube/plugin``; any other type is a
folder name found in a plugins folder, or a path. The instance's ``route`` (platform and
channel) is the core's: the relay stamps it on what the connector publishes
(``rosey.security.connector_relay``), whatever the connector says.

Secrets (``env:VAR``, ``file:PATH``) are resolved here, in the bot: the value then reaches the
connector in its bootstrap over the control channel, like its broker password, and never its
argv, environment, logs or status.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rosey.config import SECRET_SETTINGS, BotConfig, ConnectorEntry
from rosey.connectors.cytube.settings import resolve_secret
from rosey.errors import ConfigError, ManifestError
from rosey.plugins.discovery import MANIFEST_FILE, DiscoveredPlugin, check_entrypoint
from rosey.plugins.reading import ManifestRead, ManifestReader, read_in_process

__all__ = [
    "BUILTIN_TYPES",
    "ConnectorInstances",
    "Route",
    "connector_instances",
    "is_secret",
]

#: Connector types shipped inside the package: type → folder.
BUILTIN_TYPES: dict[str, Path] = {
    "cytube": Path(__file__).resolve().parent / "cytube" / "plugin",
}
#: Types whose platform lowercases channel names (the route must match what the server says).
_LOWERCASE_CHANNELS = frozenset({"cytube"})


@dataclass(frozen=True)
class Route:
    """Where one connector instance speaks: its platform and channel (the core's word)."""

    instance: str
    platform: str
    channel: str


@dataclass
class ConnectorInstances:
    """The instances to supervise, their routes, and every problem (an instance with a problem
    is left out; the rest run)."""

    plugins: dict[str, DiscoveredPlugin] = field(default_factory=dict)
    routes: dict[str, Route] = field(default_factory=dict)
    problems: list[ConfigError | ManifestError] = field(default_factory=list)


def is_secret(key: str) -> bool:
    """Whether a connector setting holds a secret (``env:``/``file:`` only)."""
    return key in SECRET_SETTINGS or key.endswith(tuple(f"_{s}" for s in SECRET_SETTINGS))


def find_folder(kind: str, plugins_dirs: Sequence[Path]) -> Path | None:
    """The folder of connector type ``kind``: built in, a folder in a plugins folder, or a path."""
    if kind in BUILTIN_TYPES:
        return BUILTIN_TYPES[kind]
    candidates = [Path(kind)] if ("/" in kind or kind.startswith(".")) else []
    candidates += [folder / kind for folder in plugins_dirs]
    return next((c for c in candidates if (c / MANIFEST_FILE).is_file()), None)


def resolved_settings(instance: str, entry: ConnectorEntry) -> dict[str, Any]:
    """The entry's settings with every secret read from where the operator keeps it."""
    source = f"connectors.{instance}"
    settings = entry.settings
    for key, value in list(settings.items()):
        if is_secret(key):
            settings[key] = resolve_secret(value, source=source, field=key)
    return settings


def connector_instances(
    config: BotConfig,
    taken: Mapping[str, object] | None = None,
    read: ManifestReader = read_in_process,
) -> ConnectorInstances:
    """Every ``connectors:`` instance as a plugin to supervise; ``taken``: plugin names already
    in use (an instance may not share a name with a plugin: name = identity). ``read`` reads
    the connectors' manifests (all at once), as ``rosey.plugins.discovery.discover`` does."""
    found = ConnectorInstances()
    taken = taken or {}
    folders = {e.type: find_folder(e.type, config.plugins_dir) for e in config.connectors.values()}
    files = sorted({folder / MANIFEST_FILE for folder in folders.values() if folder is not None})
    reads: dict[Path, ManifestRead] = {item.path: item for item in read(files)}
    for instance, entry in sorted(config.connectors.items()):
        source = f"connectors.{instance}"
        if instance in taken:
            found.problems.append(
                ConfigError(source, "name", f"{instance!r} is also a plugin's name; rename one")
            )
            continue
        folder = folders[entry.type]
        if folder is None:
            found.problems.append(
                ConfigError(
                    source,
                    "type",
                    f"{entry.type!r}: no such connector; allowed: "
                    f"{', '.join(sorted(BUILTIN_TYPES))}, or a plugin folder (name in a plugins "
                    "folder, or path) whose manifest says kind: connector",
                )
            )
            continue
        manifest = reads[folder / MANIFEST_FILE].manifest
        if manifest is None:
            found.problems.append(reads[folder / MANIFEST_FILE].problems[0])
            continue
        if manifest.kind != "connector":
            found.problems.append(
                ConfigError(
                    source, "type", f"{folder} is a plugin, not a connector (kind: connector)"
                )
            )
            continue
        problem = check_entrypoint(manifest, folder, str(folder / MANIFEST_FILE))
        if problem is not None:
            found.problems.append(problem)
            continue
        try:
            settings = resolved_settings(instance, entry)
        except ConfigError as exc:
            found.problems.append(exc)
            continue
        config_values = {**manifest.config, **settings}
        platform = config_values.get("platform")
        channel = config_values.get("channel")
        if not isinstance(platform, str) or not platform:
            found.problems.append(
                ConfigError(source, "platform", "the connector names no platform (a string)")
            )
            continue
        if not isinstance(channel, str) or not channel:
            found.problems.append(ConfigError(source, "channel", "required: the channel to join"))
            continue
        if entry.type in _LOWERCASE_CHANNELS:
            channel = channel.lower()
        found.plugins[instance] = DiscoveredPlugin(
            manifest.model_copy(update={"name": instance, "config": config_values}), folder
        )
        found.routes[instance] = Route(instance, platform, channel)
    return found
