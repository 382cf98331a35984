"""What the sandbox needs to start one plugin process: the ``SpawnSpec``, and the environment
it runs with (``scrubbed_env``: tokens and secrets of the bot's environment never reach it)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rosey.sandbox.limits import ResourceLimits

__all__ = ["ResourceLimits", "SpawnSpec", "base_env", "scrubbed_env"]

#: Environment variables a plugin inherits; everything else (tokens, secrets) is dropped.
_KEPT_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "PYTHONPATH")


@dataclass(frozen=True)
class SpawnSpec:
    """Everything needed to start one plugin process."""

    name: str
    plugin_dir: Path
    data_dir: Path
    log_path: Path
    bootstrap: Mapping[str, Any]
    limits: ResourceLimits = field(default_factory=ResourceLimits)
    log_max_bytes: int = 1024 * 1024
    log_backups: int = 2
    extra_env: Mapping[str, str] = field(default_factory=dict)
    #: (uid, gid) the plugin switches to (``rosey.sandbox.uids``); its data folder is theirs.
    run_as: tuple[int, int] | None = None
    #: The interpreter to run (a plugin's own environment, ``rosey.sandbox.environments``);
    #: None: the spawner's (the bot's). A spec with its own never goes through a fork server.
    python: str | None = None


def base_env() -> dict[str, str]:
    """A few harmless variables of ours: what the fork server starts with, and every plugin.

    A forked plugin's ``/proc/PID/environ`` shows this (the fork server's start environment);
    its ``os.environ`` is its ``scrubbed_env``.
    """
    env = {key: os.environ[key] for key in _KEPT_ENV if key in os.environ}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    return env


def scrubbed_env(spec: SpawnSpec) -> dict[str, str]:
    """The plugin's environment: a few harmless variables of ours, its folders, its name."""
    env = base_env()
    env.update(
        HOME=str(spec.data_dir),
        TMPDIR=str(spec.data_dir),
        PYTHONUNBUFFERED="1",
        ROSEY_PLUGIN=spec.name,
    )
    env.update(spec.extra_env)
    return env
