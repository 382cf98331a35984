"""What the sandbox needs to spawn one plugin: its bootstrap, folders, log file and limits."""

from __future__ import annotations

from pathlib import Path

from rosey.manager.context import ManagerContext
from rosey.plugins.manifest import Manifest
from rosey.sandbox.process import ResourceLimits, SpawnSpec


def spawn_spec(ctx: ManagerContext, name: str, folder: Path, manifest: Manifest) -> SpawnSpec:
    """The spawn request for ``name``; the bootstrap reaches the plugin over its control pipe."""
    identity = ctx.identity(name)
    data_dir = ctx.data_dir(name)
    bootstrap = {
        "name": name,
        "plugin_dir": str(folder.resolve()),
        "entrypoint": manifest.entrypoint,
        "data_dir": str(data_dir),
        "nats_url": ctx.nats_url,
        "user": identity.user,
        "password": identity.password,
        "inbox_prefix": identity.inbox_prefix,
        "config": manifest.config,
        "stop_timeout_s": manifest.stop_timeout_s,
    }
    if ctx.config.security.landlock:
        # Applied by the runner to itself before any plugin code runs (sandbox/landlock.py).
        bootstrap["sandbox"] = {
            "read": [str(folder.resolve())],
            "write": [str(data_dir)],
            "connect_ports": [ctx.broker_port] if ctx.broker_port else [],
            "network": "network" in manifest.permissions,
        }
    return SpawnSpec(
        name=name,
        plugin_dir=folder.resolve(),
        data_dir=data_dir,
        log_path=ctx.log_path(name),
        bootstrap=bootstrap,
        limits=ResourceLimits(
            memory_mb=manifest.limits.memory_mb,
            cpu_percent=manifest.limits.cpu_percent,
            max_processes=manifest.limits.max_processes,
            open_files=manifest.limits.open_files,
        ),
    )
