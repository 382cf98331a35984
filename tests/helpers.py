"""Small helpers shared by the tests (imported as ``helpers``: ``tests/`` is on sys.path)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterable

import psutil

from rosey.protocol import wire

__all__ = ["chat_command", "eventually", "is_alive", "wait_gone"]

_POLL = 0.02  # seconds between checks; the deadline is what bounds the wait


def is_alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie has finished running and counts as gone."""
    try:
        return psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def wait_gone(pids: Iterable[int], timeout: float) -> list[int]:
    """Wait until none of ``pids`` runs, for at most ``timeout`` s; return those still running.

    Polls psutil: a process that is not our child gives us nothing to await.
    """
    alive = [pid for pid in pids if is_alive(pid)]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while alive and loop.time() < deadline:
        await asyncio.sleep(_POLL)
        alive = [pid for pid in alive if is_alive(pid)]
    return alive


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    """Wait until ``check()`` holds, for at most ``timeout`` s; ``AssertionError`` names ``what``.

    For state in another process that announces no event (e.g. a plugin's in-flight count).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        await asyncio.sleep(_POLL)


def chat_command(name: str, *args: str) -> wire.CommandRequest:
    """The request the router sends a plugin for ``!NAME ARGS`` said by ``tester`` (rank 0) in
    ``room`` on the ``test`` platform, with a fresh correlation id."""
    return wire.command_request(
        name,
        args,
        user={"username": "tester", "rank": 0},
        channel="room",
        platform="test",
        correlation_id=uuid.uuid4().hex,
    )
