"""Seeing a plugin process exit the moment it does.

Python 3.11's ``Process.wait()`` also waits until every pipe is closed, i.e. until any
grandchild holding the plugin's stdout has exited too: a plugin that exits while a child it
forked lives on would never be seen to exit. ``ExitProtocol`` resolves ``exited`` from the
child-watcher's exit notice instead.

A plugin forked by the fork server (``rosey.sandbox.forkspawner``) is a child the bot adopted
(it is the child subreaper), not one asyncio started: ``ExitWatch`` sees its exit through a
pidfd in the event loop and collects the status with ``waitpid``, mapped as asyncio maps it
(an exit code, or minus the signal number).
"""

from __future__ import annotations

import asyncio
import contextlib
import os

__all__ = ["ExitProtocol", "ExitWatch"]


class ExitProtocol(asyncio.subprocess.SubprocessStreamProtocol):
    """Resolves ``exited`` the moment the process ends.

    Python 3.11's ``Process.wait()`` also waits until every pipe is closed, i.e. until any
    grandchild holding the plugin's stdout has exited too: a plugin that exits while a child
    it forked lives on would never be seen to exit.
    """

    def __init__(self, limit: int, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(limit=limit, loop=loop)
        self.exited: asyncio.Future[int] = loop.create_future()
        self.subprocess: asyncio.SubprocessTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if isinstance(transport, asyncio.SubprocessTransport):
            self.subprocess = transport

    def process_exited(self) -> None:
        super().process_exited()
        code = self.subprocess.get_returncode() if self.subprocess is not None else None
        if not self.exited.done() and code is not None:
            self.exited.set_result(code)


class ExitWatch:
    """The exit of ``pid``, a child of ours asyncio did not start: a pidfd in the event loop.

    ``exited`` resolves with the return code the moment the process ends (an exit code, or
    minus the signal that killed it, as asyncio reports it); the zombie is reaped then. Must be
    created while ``pid`` is our child and not yet reaped (a zombie is fine: it is seen at once).
    """

    def __init__(self, pid: int, loop: asyncio.AbstractEventLoop) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self.exited: asyncio.Future[int] = loop.create_future()
        self._loop = loop
        self._pidfd = os.pidfd_open(pid)
        loop.add_reader(self._pidfd, self._collect)

    def _collect(self) -> None:
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:  # reaped by someone else: the status is lost
            pid, status = self.pid, 255 << 8
        if pid == 0:
            return  # not yet (a spurious wake-up)
        self.returncode = os.waitstatus_to_exitcode(status)
        self._stop_watching()
        if not self.exited.done():
            self.exited.set_result(self.returncode)

    def _stop_watching(self) -> None:
        if self._pidfd >= 0:
            with contextlib.suppress(Exception):  # the loop may be closed already
                self._loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = -1

    def close(self) -> None:
        """Stop watching (the process is left as it is; still a child of ours)."""
        self._stop_watching()
