"""The plugin's end of the control channel (``rosey.protocol.control`` has its messages).

Blocking before the event loop runs (the bootstrap, the ``confined`` report, an early
``failed``), asyncio once the plugin serves (``ready``, ``failed``, ``stop``). End of file
means the manager is gone.
"""

from __future__ import annotations

import asyncio
import socket

from rosey.protocol import control
from rosey.protocol.control import BootstrapMessage, ControlMessage

__all__ = ["ControlChannel"]


class ControlChannel:
    """The line-oriented JSON channel to the manager, on the inherited socket ``fd``."""

    def __init__(self, fd: int) -> None:
        self._sock = socket.socket(fileno=fd)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    def send_now(self, message: ControlMessage) -> None:
        """Blocking send, before the event loop starts."""
        self._sock.sendall(control.encode(message))

    def read_bootstrap(self) -> BootstrapMessage:
        """Blocking read of the first line, before the event loop starts.

        ``SystemExit(70)`` when the manager went away first or sent something else: there is
        nobody to report to, and nothing to start.
        """
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = self._sock.recv(65536)
            if not chunk:
                raise SystemExit(70)  # manager went away before bootstrapping us
            buf += chunk
        message = control.decode(buf)
        if message["type"] != "bootstrap":
            raise SystemExit(70)
        return message

    async def open(self) -> None:
        self._sock.setblocking(False)
        self._reader, self._writer = await asyncio.open_connection(sock=self._sock)

    async def send(self, message: ControlMessage) -> None:
        if self._writer is None:
            return
        try:
            self._writer.write(control.encode(message))
            await self._writer.drain()
        except (ConnectionError, OSError):
            pass  # manager gone: EOF handling ends us

    async def receive(self) -> ControlMessage | None:
        """The next message, or None at end of file (the manager is gone)."""
        assert self._reader is not None
        try:
            line = await self._reader.readline()
        except (ConnectionError, OSError):
            return None
        if not line:
            return None
        return control.decode(line)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        else:
            self._sock.close()
