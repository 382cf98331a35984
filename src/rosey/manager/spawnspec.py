"""What the sandbox needs to spawn one plugin: its bootstrap, folders, log file and limits."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from rosey.errors import EnvironmentNotBuilt
from rosey.manager.context import ManagerContext
from rosey.protocol.manifest import Manifest
from rosey.sandbox import uids
from rosey.sandbox.process import ResourceLimits, SpawnSpec


async def check_once(ctx: ManagerContext) -> None:
    """Run the one-time checks ``spawn_spec`` makes (whether plugin uids can run the runtime:
    a probe process, ~0.1 s) in a thread, before a start-all: the first spawn would otherwise
    block the event loop, and every plugin starting with it, for that long."""
    security = ctx.config.security
    if security.plugin_uids and os.geteuid() == 0:
        first, _ = security.plugin_uid_range
        await asyncio.to_thread(uids.unavailable, first, ctx.config.state_dir.resolve())


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
    security = ctx.config.security
    state_dir = ctx.config.state_dir.resolve()
    env = _environment(state_dir, name, folder, manifest)
    run_as: tuple[int, int] | None = None
    groups: list[int] = []
    if security.plugin_uids and os.geteuid() == 0:
        first, last = security.plugin_uid_range
        if uids.unavailable(first, state_dir) is None:
            uid = uids.plugin_uid(state_dir, name, first, last)
            run_as = (uid, uid)
            if env is not None:
                # The environment's own group, which only the plugins using it get: other
                # plugins' uids cannot enter it (a name no plugin can have: "env:<key>").
                from rosey.sandbox import environments  # see _environment

                gid = uids.plugin_uid(state_dir, f"env:{env.name}", first, last)
                environments.share_with_group(env, gid)
                groups.append(gid)
    # Applied by the runner to itself, after the bootstrap and before any plugin code: its
    # own PID/IPC namespaces (sandbox/namespaces.py), then its own uid (sandbox/uids.py).
    bootstrap["isolation"] = {
        "pid_namespace": security.pid_namespace,
        "ipc_namespace": security.ipc_namespace,
        # Only root can hand out uids: then a uid that cannot be had is a missing layer.
        "plugin_uids": security.plugin_uids and os.geteuid() == 0,
        "uid": run_as[0] if run_as else None,
        "gid": run_as[1] if run_as else None,
        "groups": groups,
        "max_processes": manifest.limits.max_processes,
    }
    if security.seccomp:
        # The last step before plugin code (sandbox/seccomp.py).
        bootstrap["seccomp"] = {"network": "network" in manifest.permissions}
    if ctx.config.security.landlock:
        # Applied by the runner to itself before any plugin code runs (sandbox/landlock.py).
        bootstrap["sandbox"] = {
            "read": [str(folder.resolve()), *([str(env)] if env is not None else [])],
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
        run_as=run_as,
        # The manifest's limits are the kernel's (sandbox/limits.py adds fixed safety caps).
        limits=ResourceLimits(**manifest.limits.model_dump()),
        python=str(env / "bin" / "python") if env is not None else None,
    )


def _environment(state_dir: Path, name: str, folder: Path, manifest: Manifest) -> Path | None:
    """The plugin's own built environment (None: it has no requirements, it runs in the
    bot's). ``EnvironmentNotBuilt``, naming the command that builds it, when it is missing:
    environments are built at validate/install time, never at start."""
    if not manifest.requirements:
        return None
    # Only for plugins with requirements: it pulls importlib.metadata (email, zipfile, csv...),
    # ~1.5 MiB of a manager that runs none.
    from rosey.sandbox import environments

    store = environments.EnvironmentStore(state_dir / "envs")
    if store.python_for(manifest.requirements) is None:
        command = f"rosey plugin validate --state-dir {state_dir} {folder.resolve()}"
        raise EnvironmentNotBuilt(name, manifest.requirements, command)
    return store.path_for(manifest.requirements)
