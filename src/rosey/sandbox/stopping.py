"""Terminate → grace → kill: the one escalation every child Rosey owns is stopped with.

A stop is a list of polite steps, each an action (a stop request on the control channel,
SIGTERM to the group) and the moment, counted from the start of the stop, until which the
process gets to exit after it. ``escalate`` runs them in order and returns as soon as the process
is gone; if it is still there after the last one, the caller kills it (what "kill" means
differs: a plugin's whole tree and cgroup, the nats-server's pid). Exit is awaited, never
polled; the whole stop is bounded by the last step's moment.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Sequence

__all__ = ["Step", "escalate", "exited_within"]

#: A polite step: what to do, and until when (seconds from the start of the stop) to wait.
Step = tuple[Callable[[], Awaitable[None] | None], float]


async def exited_within(exited: asyncio.Future[int], seconds: float) -> bool:
    """True once ``exited`` resolves within ``seconds``; ``exited`` itself is never cancelled."""
    if exited.done():
        return True
    try:
        async with asyncio.timeout(max(0.0, seconds)):
            await asyncio.shield(exited)
    except TimeoutError:
        return False
    return True


async def escalate(exited: asyncio.Future[int], steps: Sequence[Step]) -> bool:
    """Run ``steps`` until the process exits; True if it did, False if the caller must kill.

    A step whose moment has already passed still runs its action (a SIGTERM is never skipped
    because a stop request took long), then waits for nothing.
    """
    started = time.monotonic()
    for action, until in steps:
        if exited.done():
            return True
        outcome = action()
        if inspect.isawaitable(outcome):
            await outcome
        if await exited_within(exited, started + until - time.monotonic()):
            return True
    return exited.done()
