"""Seeing a plugin process exit the moment it does.

Python 3.11's ``Process.wait()`` also waits until every pipe is closed, i.e. until any
grandchild holding the plugin's stdout has exited too: a plugin that exits while a child it
forked lives on would never be seen to exit. ``ExitProtocol`` resolves ``exited`` from the
child-watcher's exit notice instead.
"""

from __future__ import annotations

import asyncio

__all__ = ["ExitProtocol"]


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
