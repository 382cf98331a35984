"""The two asyncio shapes the rest of rosey repeats: owned in-flight tasks, and first-of waits.

``TaskSet`` is an owned set of background tasks with a bounded stop: what the router (one task
per command), the management face (one per request), the manager context (supervisor life tasks,
health monitors) and the plugin runtime (one per command handler) each need. Every task has an
owner that awaits or cancels it; a failure is logged, never left for the garbage collector.

``first_of`` waits for the first of several awaitables (a process exiting, a stop event, a
message) and cancels the others, so no caller leaves a stray ``Event.wait()`` future behind.

Standard library only, and nothing of rosey's: the plugin process imports this (through
``rosey.sdk.runtime``), so it sits at the bottom of the import picture and stays light.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from functools import partial
from typing import Any, TypeVar

__all__ = ["TaskSet", "first_of"]

T = TypeVar("T")


class TaskSet:
    """Background tasks owned by one object; ``drain``/``cancel_all`` end them within a bound.

    ``failure`` is the log line for a task that raised (``%s`` gets the task's name), or None
    to leave the exception to whoever holds the task.
    """

    def __init__(self, log: logging.Logger | None = None, failure: str | None = None) -> None:
        self._log = log
        self._failure = failure
        self._tasks: set[asyncio.Task[Any]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def __iter__(self) -> Iterator[asyncio.Task[Any]]:
        return iter(set(self._tasks))

    def spawn(
        self,
        coro: Coroutine[Any, Any, T],
        *,
        name: str | None = None,
        on_done: Callable[[asyncio.Task[T]], None] | None = None,
    ) -> asyncio.Task[T]:
        """Run ``coro`` in a task owned here; ``on_done`` runs when it ends (after the set
        let go of it and logged a failure)."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        # One done callback per task, not two: each is a loop callback of its own, and the
        # router spawns one task per chat command.
        if on_done is None:
            task.add_done_callback(self._finished)
        else:
            task.add_done_callback(partial(self._finished_then, on_done))
        return task

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if self._failure is None or task.cancelled():
            return
        if task.exception() is not None and self._log is not None:
            failure = self._failure
            args = (task.get_name(),) if "%s" in failure else ()
            self._log.error(failure, *args, exc_info=task.exception())

    def _finished_then(
        self, on_done: Callable[[asyncio.Task[T]], None], task: asyncio.Task[T]
    ) -> None:
        self._finished(task)
        on_done(task)

    async def drain(self, timeout: float, *, grace: float = 1.0) -> int:
        """Let the tasks finish for up to ``timeout`` s, then cancel the rest and give them
        ``grace`` s to unwind. Returns how many had to be cancelled (the caller may say so)."""
        if not self._tasks:
            return 0
        _, pending = await asyncio.wait(set(self._tasks), timeout=max(0.0, timeout))
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=grace)
        return len(pending)

    async def cancel_all(self, timeout: float = 5.0) -> None:
        """Cancel every task now and wait up to ``timeout`` s for them to unwind."""
        tasks = [t for t in self._tasks if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)


async def first_of(*waits: Awaitable[Any], timeout: float | None = None) -> tuple[int, Any]:
    """Wait until the first of ``waits`` finishes: ``(its index, its result)``.

    When several finished together the lowest index wins, so callers list them by priority
    (a stop request first). The winner's exception is raised as it is. ``(-1, None)`` when
    ``timeout`` passed first. Every other one is cancelled and awaited before this returns, also
    when this wait itself is cancelled.
    """
    futures = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(futures, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        losers = [f for f in futures if not f.done()]
        for future in losers:
            future.cancel()
        if losers:
            await asyncio.wait(losers)
    finished = [(i, f) for i, f in enumerate(futures) if not f.cancelled()]
    for _, future in finished[1:]:
        future.exception()  # retrieved: a loser's failure is not the caller's concern
    if not finished:
        return -1, None
    index, winner = finished[0]
    return index, winner.result()
