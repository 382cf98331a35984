"""The ``ProcessHandle`` seam: a started plugin process, whichever spawner started it.

``PluginProcess`` (the supervisor's view) needs a pid, the return code once known, a future
that resolves at exit, the two output streams and a way to signal it. The plain spawn gives an
asyncio subprocess (``SubprocessHandle``); the fork server gives a process the bot adopted
(``AdoptedHandle``: pipes read by the event loop, exit seen by a pidfd, ``rosey.sandbox.exits``).
The manager cannot tell them apart, except through ``how`` ("spawned" or "forked"), which
status and the logs show.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from typing import Literal, Protocol

from rosey.sandbox.exits import ExitProtocol, ExitWatch

__all__ = ["AdoptedHandle", "How", "ProcessHandle", "SubprocessHandle"]

#: How a process was started: exec'd by the plain spawn, or forked by the fork server.
How = Literal["spawned", "forked"]

_STREAM_LIMIT = 64 * 1024  # asyncio's default StreamReader buffer limit


class ProcessHandle(Protocol):
    """One started process as the supervisor sees it."""

    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None:
        """None while it runs; then its exit code, or minus the signal that killed it."""

    @property
    def exited(self) -> asyncio.Future[int]:
        """Resolves with ``returncode`` the moment it ends (not when its pipes close)."""

    @property
    def stdout(self) -> asyncio.StreamReader: ...

    @property
    def stderr(self) -> asyncio.StreamReader: ...

    @property
    def how(self) -> How: ...

    def send_signal(self, signum: int) -> None:
        """Signal the process itself (not its group); nothing if it is gone."""

    def close(self) -> None:
        """Release our ends of its pipes and the exit watch (once it has exited, or to give up)."""


class SubprocessHandle:
    """A process asyncio started (the plain spawn): its transport and exit protocol."""

    how: How = "spawned"

    def __init__(self, transport: asyncio.SubprocessTransport, protocol: ExitProtocol) -> None:
        self._transport = transport
        self._protocol = protocol
        assert protocol.stdout is not None
        assert protocol.stderr is not None
        self.stdout: asyncio.StreamReader = protocol.stdout
        self.stderr: asyncio.StreamReader = protocol.stderr

    @property
    def pid(self) -> int:
        return self._transport.get_pid()

    @property
    def returncode(self) -> int | None:
        return self._transport.get_returncode()

    @property
    def exited(self) -> asyncio.Future[int]:
        return self._protocol.exited

    def send_signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            self._transport.send_signal(signum)

    def close(self) -> None:
        if self._protocol.exited.done():
            self._transport.close()  # our ends of its pipes, even if an orphan still holds theirs


class AdoptedHandle:
    """A forked process the bot is the parent of without having started it itself.

    ``stdout_fd`` and ``stderr_fd`` are our (read) ends of its pipes; they are read by the
    event loop from here on, and closed by ``close``.
    """

    how: How = "forked"

    def __init__(
        self,
        watch: ExitWatch,
        stdout: asyncio.StreamReader,
        stderr: asyncio.StreamReader,
        transports: list[asyncio.ReadTransport],
    ) -> None:
        self._watch = watch
        self.stdout = stdout
        self.stderr = stderr
        self._transports = transports

    @classmethod
    async def adopt(cls, pid: int, stdout_fd: int, stderr_fd: int) -> AdoptedHandle:
        """Watch ``pid`` (our child) and read its output pipes; the fds are ours to close."""
        loop = asyncio.get_running_loop()
        transports: list[asyncio.ReadTransport] = []
        readers: list[asyncio.StreamReader] = []
        try:
            watch = ExitWatch(pid, loop)
        except BaseException:
            os.close(stdout_fd)
            os.close(stderr_fd)
            raise
        try:
            for fd in (stdout_fd, stderr_fd):
                reader = asyncio.StreamReader(limit=_STREAM_LIMIT, loop=loop)
                pipe = os.fdopen(fd, "rb", buffering=0)
                transport, _ = await loop.connect_read_pipe(_protocol_for(reader, loop), pipe)
                transports.append(transport)
                readers.append(reader)
        except BaseException:
            watch.close()
            for transport in transports:
                transport.close()
            raise
        return cls(watch, readers[0], readers[1], transports)

    @property
    def pid(self) -> int:
        return self._watch.pid

    @property
    def returncode(self) -> int | None:
        return self._watch.returncode

    @property
    def exited(self) -> asyncio.Future[int]:
        return self._watch.exited

    def send_signal(self, signum: int) -> None:
        if self._watch.returncode is None:  # not reaped: the pid is still this process
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._watch.pid, signum)

    def close(self) -> None:
        for transport in self._transports:
            transport.close()
        if self._watch.exited.done():
            self._watch.close()


def _protocol_for(
    reader: asyncio.StreamReader, loop: asyncio.AbstractEventLoop
) -> Callable[[], asyncio.StreamReaderProtocol]:
    return lambda: asyncio.StreamReaderProtocol(reader, loop=loop)
