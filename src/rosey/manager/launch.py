"""The two waits of a plugin process's life: until it is ready, and until it ends.

Both also end early when a stop is requested (``stop`` is set), so a stop never waits for a
start timeout or for a plugin to exit on its own. Nothing here changes a plugin's state: the
supervisor reads the outcome and decides.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from rosey.aio import first_of
from rosey.errors import ExitedDuringStart, StartFailed, StartTimeout
from rosey.lifecycle.exits import ExitFacts
from rosey.manager.health import HealthMonitor
from rosey.protocol.control import ControlMessage
from rosey.protocol.text import clean
from rosey.sandbox.process import PluginProcess

__all__ = ["EXIT", "HANDOVER", "STOP", "Ended", "Run", "await_ready", "run_until_exit"]

log = logging.getLogger("rosey.manager")

_TAIL = 8


@dataclass(slots=True)
class Run:
    """One process incarnation of a plugin."""

    process: PluginProcess
    ready_at: float | None = None
    #: Why the manager ended it for its health (set before the kill): a crash, not a stop.
    kill_reason: str | None = None
    monitor: HealthMonitor | None = None


@dataclass(frozen=True, slots=True)
class Ended:
    """How a run ended without a stop request."""

    returncode: int | None
    ran_for: float = 0.0
    start_error: StartFailed | None = None
    kill_reason: str | None = None
    #: The resource limit the kernel held it to when it ended (OOM kill, refused forks).
    limit_reason: str | None = None

    @property
    def facts(self) -> ExitFacts:
        """The end as the pure verdict (``rosey.lifecycle.exits``) takes it."""
        error = None if self.start_error is None else str(self.start_error)
        return ExitFacts(self.returncode, error, self.kill_reason, self.limit_reason)


async def await_ready(
    process: PluginProcess, stop: asyncio.Event, timeout: float
) -> StartFailed | None:
    """None once it says ``ready`` (or once ``stop`` is set); else why it did not get there.

    Why, as an error with the last stderr lines: it exited first (``ExitedDuringStart``), it
    reported ``failed`` (``on_start`` raised, the bus was unreachable), or ``timeout`` seconds
    passed (``StartTimeout``; the caller kills it).
    """
    name = process.name
    confined = False
    try:
        async with asyncio.timeout(timeout):
            while True:
                # A stop first, then what the process said, then its exit (a message sent just
                # before it exited is still read).
                first, result = await first_of(stop.wait(), process.receive(), process.wait())
                if first == 0:
                    return None
                if first == 2:
                    return ExitedDuringStart(name, result, _tail(process))
                message: ControlMessage | None = result
                if message is None:  # the channel closed: it is exiting
                    return ExitedDuringStart(name, await process.wait(), _tail(process))
                if message["type"] == "confined":
                    # Sent by the runner before any plugin code ran, so the plugin cannot
                    # have forged it; later copies are ignored.
                    if not confined:
                        confined = True
                        process.layers = [*process.layers, *message["layers"]]
                    continue
                if message["type"] == "ready":
                    return None
                if message["type"] == "failed":
                    # Plugin code may have written this (it can reach the channel): the text
                    # is logged and shown, so bounded and cleaned of escapes and newlines.
                    why = clean(message["error"][:500], one_line=True)
                    return StartFailed(
                        name, f"plugin {name!r} failed to start: {why}", _tail(process)
                    )
    except TimeoutError:
        return StartTimeout(name, timeout, _tail(process))


#: Why ``run_until_exit`` returned: a stop request, the process's exit, a handover (reload).
STOP, EXIT, HANDOVER = 0, 1, 2


async def run_until_exit(
    process: PluginProcess,
    stop: asyncio.Event,
    monitor: HealthMonitor,
    wake: asyncio.Future[None],
    handover: Callable[[], bool] | None = None,
) -> int:
    """Keep ``monitor`` (the health checks) on until ``stop`` is set (``STOP``), the process
    exits (``EXIT``) or ``handover()`` holds (``HANDOVER``: a reload's new instance takes over);
    the monitor is stopped either way. Exit is awaited, never polled; on ``EXIT`` the rest of
    its tree is killed and its output read to the end (bounded) before returning.

    Whoever sets ``stop`` or asks a handover resolves ``wake`` (a future for this call only), and
    so does the exit: the wait is on that one future, without a task (it lasts the whole run
    of every plugin: what a task and a wait cost, times a hundred plugins, is the manager's).
    """
    try:
        monitor.start()
    except Exception:  # a bug: say so at once (the process keeps running unwatched)
        log.exception("health monitor of %s failed", process.name)

    def exited(_: asyncio.Future[int]) -> None:
        if not wake.done():
            wake.set_result(None)

    exit_future = process.exit_future
    exit_future.add_done_callback(exited)
    try:
        while (first := _why(stop, process, handover)) is None:
            if wake.done():  # woken with nothing set (cannot happen): wait for the exit only
                await asyncio.shield(exit_future)
            else:
                await wake
        if first == EXIT:
            # What is left of its tree would die with it, in its own time: kill it now, and
            # the pipes close at once; then its last words are read (``limit_reason`` and the
            # crash report look for them).
            process.kill_tree()
            process.confinement.restart_ahead()  # a restart may follow: its cgroup move, ahead
            await process.wait()
    finally:
        exit_future.remove_done_callback(exited)
        await monitor.stop()
    return first


def _why(
    stop: asyncio.Event, process: PluginProcess, handover: Callable[[], bool] | None
) -> int | None:
    """Why the run ends, by priority (a stop first), or None while nothing says it does."""
    if stop.is_set():
        return STOP
    if process.exit_future.done():
        return EXIT
    if handover is not None and handover():
        return HANDOVER
    return None


def _tail(process: PluginProcess) -> list[str]:
    return process.stderr_tail.lines(_TAIL)
