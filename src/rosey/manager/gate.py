"""The start gate: how many plugins may be in their CPU-heavy spawn→ready phase at once.

Starting a plugin is mostly CPU: an interpreter starts and imports the SDK and nats. Fifty of
them at once on two cores take longer in total than a few at a time (measured with
``bench/recovery.py``: start_all of 50 trivial plugins went from about 1.3 to about 1.15 × the
ideal ``50 × floor ÷ cores``), because they thrash the caches and the scheduler. So a start
takes a slot first. A slot is given back when the plugin is ready or has failed, and after
``hold_s`` at the latest, so a plugin with a slow ``on_start`` never holds the others back for
longer than that. Backoff waits happen before a slot is taken: they never hold one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator

__all__ = ["StartGate"]


class StartGate:
    """At most ``slots`` starts in their first ``hold_s`` seconds at once."""

    def __init__(self, slots: int | None = None, hold_s: float = 1.0) -> None:
        self.slots = slots if slots is not None else max(2, 2 * (os.cpu_count() or 1))
        self.hold_s = hold_s
        self._semaphore = asyncio.Semaphore(self.slots)
        #: Data folders readied by plugins waiting for a slot, at once (``PluginLife``): few,
        #: so the worker threads stay free for the slots' own steps.
        self.preparing = asyncio.Semaphore(max(1, self.slots // 2))

    @property
    def full(self) -> bool:
        """Every slot is taken: a start now waits for one."""
        return self._semaphore.locked()

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold a slot for the body, or for ``hold_s`` if the body takes longer."""
        await self._semaphore.acquire()
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._semaphore.release()

        timer = asyncio.get_running_loop().call_later(self.hold_s, release)
        try:
            yield
        finally:
            timer.cancel()
            release()
