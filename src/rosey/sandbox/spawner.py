"""Starting plugin processes: ``python -I -m rosey.sdk.runner`` in a new session.

Each runs with a scrubbed environment (``rosey.sandbox.spec``), its data folder as working
directory, stdout/stderr piped into a capped log, and a control socket as its only channel for
secrets (DESIGN section 3). Spawning sits behind ``Spawner``: ``PlainSpawner`` does the steps
every plugin gets (data folder, control socket, confinement, bootstrap) around ``launch``, which
execs the runner; ``ForkSpawner`` (``rosey.sandbox.forkspawner``) overrides ``launch`` to fork
it from a preloaded fork server instead. The manager sees a ``PluginProcess`` either way.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
from collections.abc import Callable
from typing import Protocol

from rosey.protocol import control
from rosey.sandbox import uids
from rosey.sandbox.exits import ExitProtocol
from rosey.sandbox.handle import ProcessHandle, SubprocessHandle
from rosey.sandbox.logs import RotatingLog
from rosey.sandbox.plugin_process import Confine, Confinement, PluginProcess
from rosey.sandbox.spec import SpawnSpec, scrubbed_env

__all__ = ["PlainSpawner", "Spawner"]

log = logging.getLogger("rosey.sandbox")

_STREAM_LIMIT = 64 * 1024  # asyncio's default StreamReader buffer limit


class Spawner(Protocol):
    """Starts plugin processes: plainly, or from the fork server (``rosey.sandbox.forkspawner``)."""

    async def spawn(self, spec: SpawnSpec) -> PluginProcess: ...


class PlainSpawner:
    """Spawn ``python -m rosey.sdk.runner`` for each plugin."""

    def __init__(
        self,
        python: str = sys.executable,
        confine: Confine | None = None,
        prepare: Callable[[SpawnSpec], None] | None = None,
    ) -> None:
        """``prepare`` readies the data folder before the exec (default: create it); the
        sandbox's hook mounts its quota filesystem there (``rosey.sandbox.quota``)."""
        self.python = python
        self.confine = confine
        self.prepare = prepare

    async def launch(self, spec: SpawnSpec, channel: socket.socket) -> ProcessHandle:
        """Start the runner with ``channel`` as its control socket; the plain way: exec it."""
        loop = asyncio.get_running_loop()
        protocol = ExitProtocol(_STREAM_LIMIT, loop)
        # Must run on the event-loop thread: PR_SET_PDEATHSIG, armed by the child, fires
        # when the thread that forked it exits.
        transport, _ = await loop.subprocess_exec(
            lambda: protocol,
            spec.python or self.python,
            "-I",
            "-m",
            "rosey.sdk.runner",
            "--control-fd",
            str(channel.fileno()),
            "--parent-pid",
            str(os.getpid()),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            pass_fds=(channel.fileno(),),
            start_new_session=True,
            cwd=spec.data_dir,
            env=scrubbed_env(spec),
        )
        return SubprocessHandle(transport, protocol)

    async def spawn(self, spec: SpawnSpec) -> PluginProcess:
        """Ready its data folder, start it (``launch``), confine it, send its bootstrap."""
        if self.prepare is None:
            spec.data_dir.mkdir(parents=True, exist_ok=True)
        else:
            # Before the exec: its working directory is resolved then, so a mount made later
            # would lie beside the plugin, not under it. In a thread: it may run mkfs/mount.
            await asyncio.to_thread(self.prepare, spec)
        if spec.run_as is not None:
            # After any mount: the folder the plugin sees is the one handed to its uid.
            uids.own_data_dir(spec.data_dir, *spec.run_as)
        logfile = RotatingLog(spec.log_path, max_bytes=spec.log_max_bytes, backups=spec.log_backups)
        ours, theirs = socket.socketpair()
        try:
            handle = await self.launch(spec, theirs)
        except BaseException:
            ours.close()
            logfile.close()
            raise
        finally:
            theirs.close()
        reader, writer = await asyncio.open_connection(sock=ours)
        process = PluginProcess(spec, handle, reader, writer, logfile)
        log.info("%s (pid %d): %s", spec.name, process.pid, process.how)
        # The runner waits for the bootstrap before it imports any plugin code, so limits
        # applied here (cgroup membership, prlimit) are in force before the plugin's first line.
        if self.confine is not None:
            try:
                # In a worker thread: cgroup v1 writes can take milliseconds each, and with
                # many plugins starting at once they would stall the manager's event loop.
                confined = await asyncio.to_thread(self.confine, process)
                process.confinement = (
                    confined if isinstance(confined, Confinement) else Confinement(confined)
                )
            except BaseException:
                await process.stop(0.5)
                raise
        await process.send(control.bootstrap(spec.bootstrap))
        return process
