"""Run one action per plugin concurrently, each only after the actions it must follow.

``start_all`` runs "start" after the plugin's dependencies' starts; ``stop_all`` and a stop with
dependents run "stop" after the dependents' stops. Independent plugins proceed at the same
time, and nothing waits for more than it must (no wave barrier).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence

__all__ = ["run_in_order"]

log = logging.getLogger("rosey.manager")


async def run_in_order(
    order: Sequence[str],
    after: Callable[[str], Iterable[str]],
    action: Callable[[str], Awaitable[None]],
) -> None:
    """``action(name)`` for every name, each once ``action`` of every name in ``after(name)``
    that is also in ``order`` has finished. ``order`` lists each name after those it follows.

    An action that raises is logged and counts as finished: it never cancels the others.
    """
    tasks: dict[str, asyncio.Task[None]] = {}
    async with asyncio.TaskGroup() as group:
        for name in order:
            before = [tasks[other] for other in after(name) if other in tasks]
            tasks[name] = group.create_task(_run(name, before, action), name=f"ordered:{name}")


async def _run(
    name: str, before: list[asyncio.Task[None]], action: Callable[[str], Awaitable[None]]
) -> None:
    if before:
        await asyncio.wait(before)
    try:
        await action(name)
    except Exception:
        log.exception("%s: unexpected failure", name)
