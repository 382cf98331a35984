"""What a reload's switch hands from one instance to the next (``PluginLife.hand_over``).

``Handover``: the new instance (ready, past its probation) and its manifest, waiting for the
plugin's life task to take it over. ``Retirements``: the replaced instances still finishing
their work; each is told it was replaced (``stop`` with ``replaced``: the SDK answers what was
delivered to it, runs ``on_stop`` and exits) and is never counted as a crash.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

from rosey.errors import describe_exit
from rosey.protocol import control
from rosey.protocol.manifest import Manifest
from rosey.sandbox.process import PluginProcess

__all__ = ["Handover", "Retirements"]

log = logging.getLogger("rosey.manager")


@dataclass
class Handover:
    """A reload's new instance waiting for the life task to take it over."""

    process: PluginProcess
    manifest: Manifest
    folder: Path
    #: Resolved once taken over; failed when the life task will not take it.
    done: asyncio.Future[None]


class Retirements:
    """The replaced instances of one plugin that are still finishing."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def retire(self, name: str, process: PluginProcess, grace: float) -> None:
        """Stop ``process`` gracefully in the background (``wait`` waits for it)."""
        task = asyncio.get_running_loop().create_task(
            _retire(name, process, grace), name=f"retire:{name}:{process.pid}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def wait(self) -> None:
        """Until every replaced instance has ended."""
        if self._tasks:
            await asyncio.wait(list(self._tasks))


async def _retire(name: str, process: PluginProcess, grace: float) -> None:
    try:
        await process.send(control.stop(replaced=True))
        code = await process.stop(grace)
    except Exception:  # a retiring process must never take the plugin with it
        log.exception("%s (pid %d): retiring it failed", name, process.pid)
        process.kill_tree()
        return
    log.info("%s (pid %d): replaced instance ended (%s)", name, process.pid, describe_exit(code))
