"""A standby process for the next plugin start: the fork and the cgroup move done ahead of time.

A restart through the fork server pays for a double fork (~7 ms) and for the move into its
cgroup leaf: the first write to a ``cgroup.procs`` after a quiet moment waits a whole RCU grace
period (~12 ms) holding the kernel's cgroup mutex (``rosey.sandbox.cgroups.AttachPrimer``).
Android's zygote keeps "unspecialized app processes" for the same reason. The bot keeps one
(``POOL_SIZE``, a constant): forked from the fork server (``rosey.sandbox.forkserver.standby``),
it has done nothing yet (no secret, connection, loop, thread or plugin code: the image of a freshly
forked child before ``become``), sits in a cgroup leaf of its own in every hierarchy the sandbox
uses (``Placement``, the sandbox: the move paid in the background) and waits on a socket. A launch
takes it (``Standby.assign``: the plugin's cwd, environment and three descriptors); the sandbox
renames its leaf to the plugin's and writes the limits instead of creating and moving
(``rosey.sandbox.confine``); everything after is what a forked plugin gets.

It is the bot's child (the orphan reaper leaves it alone: claimed), dies with the bot (its death
signal, and the warden is told its pid and its cgroup is in the bot's group), is killed and its
leaf removed on stop and when the fork server is replaced, and one that dies unexpectedly is
replaced, never used. ``StandbyPool`` is the pure bookkeeping (table-tested), ``Standby`` the
bot's side of one such process, ``StandbyKeeper`` the I/O that runs the pool for the fork
spawner (``rosey.sandbox.forkspawner``): fills it, hands its standby to a launch (``take``).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import os
import signal
import socket
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from rosey.errors import describe_exit
from rosey.sandbox.exits import ExitWatch
from rosey.sandbox.forkserver import Forked
from rosey.sandbox.orphans import reaper

log = logging.getLogger("rosey.sandbox")

__all__ = [
    "POOL_SIZE",
    "Action",
    "Event",
    "Namespaces",
    "Phase",
    "Placement",
    "Standby",
    "StandbyKeeper",
    "StandbyPool",
    "reap_init",
    "refill_delay",
]

#: Standbys kept ready (0: none, every launch forks as before).
POOL_SIZE = 1
#: How long a fill may take (fork, move, ``ready``) before it is given up.
FILL_TIMEOUT = 5.0
#: Backoff after a standby that failed or died unexpectedly: first delay, most.
RETRY_FIRST = 0.1
RETRY_MAX = 30.0


#: The namespaces a fork server request asks to be made ahead: ``{"pid": bool, "ipc": bool}``
#: (``rosey.sandbox.namespaces.premake``); None for none.
Namespaces = dict[str, bool] | None


def reap_init(init: int) -> None:
    """End and collect the init of a forked plugin's namespaces: its plugin has ended.

    Init waits for ever (``rosey.sandbox.namespaces.init_beside``): this SIGKILL ends it, and
    its end kills whatever is left in the namespace. It is our child, claimed (the orphan
    reaper leaves it alone) and not reaped until now: the pid is still init's.
    """

    def collected(_: object) -> None:
        reaper.claimed.discard(init)

    with contextlib.suppress(ProcessLookupError):
        os.kill(init, signal.SIGKILL)
    try:
        watch = ExitWatch(init, asyncio.get_running_loop())
    except (OSError, RuntimeError):  # gone and reaped already; or no loop: nothing to watch
        reaper.claimed.discard(init)
        return
    watch.exited.add_done_callback(collected)


class Phase(enum.Enum):
    EMPTY = "empty"  # none, none coming
    FILLING = "filling"  # one being forked and placed
    READY = "ready"  # one waiting for a launch


class Event(enum.Enum):
    WANTED = "wanted"  # the fork server is up (started, restarted)
    FILLED = "filled"  # the one being filled is ready
    FAILED = "failed"  # the fill failed
    TAKEN = "taken"  # a launch took it
    DIED = "died"  # it ended on its own before any launch took it
    LOST = "lost"  # the fork server is gone: what it made is dropped
    CLOSED = "closed"  # the bot is stopping


class Action(enum.Enum):
    FILL = "fill"  # start filling (after ``refill_delay``)
    DISCARD = "discard"  # kill it and remove its leaf (or cancel the fill under way)


@dataclass
class StandbyPool:
    """What to do next, for a pool of one: pure state, no I/O."""

    size: int = POOL_SIZE
    phase: Phase = Phase.EMPTY
    closed: bool = False
    #: Fills that failed or standbys that died in a row (the backoff); a launch resets it.
    failures: int = 0

    def on(self, event: Event) -> list[Action]:
        """Record ``event``; the actions it calls for, in order."""
        was = self.phase
        if event in (Event.CLOSED, Event.LOST):
            self.closed = self.closed or event is Event.CLOSED
            self.phase = Phase.EMPTY
            return [Action.DISCARD] if was is not Phase.EMPTY else []
        if event is Event.WANTED:
            return self._fill() if was is Phase.EMPTY else []
        if event is Event.FILLED:
            if was is not Phase.FILLING:
                return [Action.DISCARD]  # dropped meanwhile: not ours any more
            self.phase = Phase.READY
            return []
        if event is Event.FAILED:
            if was is not Phase.FILLING:
                return []  # a stale report
            self.failures += 1
            return self._fill()
        if was is not Phase.READY:
            return []  # TAKEN or DIED of one no longer ours
        if event is Event.TAKEN:
            self.failures = 0
            return self._fill()
        self.failures += 1  # DIED: replaced, never used
        return [Action.DISCARD, *self._fill()]

    def _fill(self) -> list[Action]:
        if self.size <= 0 or self.closed:
            self.phase = Phase.EMPTY
            return []
        self.phase = Phase.FILLING
        return [Action.FILL]


def refill_delay(failures: int) -> float:
    """Seconds before the next fill: none normally, a doubling backoff after failures."""
    if failures <= 0:
        return 0.0
    return min(RETRY_FIRST * float(2 ** (failures - 1)), RETRY_MAX)


class Placement(Protocol):
    """Where a standby waits: the sandbox gives it a cgroup leaf (blocking calls: threads)."""

    def place(self, pid: int) -> None:
        """Its own leaf in every hierarchy, the warden told its pid; ``OSError`` if refused."""

    def unplace(self, pid: int) -> None:
        """It is gone or discarded: its leaf removed, the warden told (nothing if unknown)."""


class Standby:
    """The bot's side of one standby process: its socket, its exit, its assignment."""

    def __init__(
        self,
        forked: Forked,
        sock: socket.socket,
        loop: asyncio.AbstractEventLoop,
        made: Namespaces = None,
    ) -> None:
        """``forked``: its pid and its init's, the bot's children already (the fork server
        reaped the intermediate); no await since the fork server's answer, so the orphan reaper
        cannot have touched them. ``made``: the namespaces it was forked into (a launch that
        asks for others forks)."""
        self.pid, self.init = forked
        reaper.claimed.add(self.pid)
        if self.init is not None:
            reaper.claimed.add(self.init)
        self.made = made
        self._sock = sock
        self.watch = ExitWatch(self.pid, loop)
        self._discarded = False

    @property
    def alive(self) -> bool:
        return self.watch.returncode is None and not self.watch.exited.done()

    async def ready(self, timeout: float = FILL_TIMEOUT) -> None:
        """Wait for its ``ready`` (death signal armed, descriptors closed); ``OSError`` if not."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                hello = await loop.sock_recv(self._sock, 64)
        except TimeoutError as exc:
            raise OSError(f"standby (pid {self.pid}) did not say ready") from exc
        if hello != b"ready":
            raise OSError(f"standby (pid {self.pid}) ended before ready ({hello!r})")

    def assign(self, cwd: str, env: dict[str, str], fds: list[int]) -> None:
        """Send it the plugin it becomes (``fds``: control socket, stdout, stderr); the pid
        is then the plugin's, its exit the plugin's (``watch`` is closed: the caller adopts it).
        ``OSError`` if it is gone (it is then discarded by the caller)."""
        if not self.alive:
            raise OSError(f"standby (pid {self.pid}) is gone")
        request = json.dumps({"cwd": cwd, "env": env}).encode()
        ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array("i", fds))]
        self._sock.sendmsg([request], ancillary)  # a few hundred bytes: never blocks
        self._sock.close()
        self.watch.close()  # a zombie stays one: the caller's own watch sees it at once

    def discard(self) -> None:
        """Kill it and reap it, its init too (bounded: SIGKILL, nothing to flush); its socket
        closed. Once."""
        if self._discarded:
            return
        self._discarded = True
        self._sock.close()
        self.watch.close()
        if self.watch.returncode is None:  # not reaped: the pid is still this process
            _kill_and_reap(self.pid)
        reaper.claimed.discard(self.pid)
        if self.init is not None:  # claimed and unreaped until now: still this process
            _kill_and_reap(self.init)
            reaper.claimed.discard(self.init)


def _kill_and_reap(pid: int) -> None:
    """SIGKILL our child ``pid`` and wait for it (bounded: nothing to flush)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


class Forker(Protocol):
    """What makes standbys: the fork server (``rosey.sandbox.forkspawner.ForkServer``)."""

    broken: bool

    async def fork_standby(self, fd: int, made: Namespaces = None) -> Forked: ...


class StandbyKeeper:
    """Keeps the pool (``StandbyPool``) filled from the current fork server and hands its
    standby to a launch (``take``); the I/O around the pure bookkeeping."""

    def __init__(
        self,
        server: Callable[[], Forker | None],
        lost: Callable[[Any, str], None],
        placement: Placement | None,
        *,
        size: int = POOL_SIZE,
    ) -> None:
        """``server`` gives the fork server now (None: down); ``lost`` is told when it failed
        a standby request for good (it is then replaced); ``placement``: the sandbox."""
        self._server = server
        self._on_lost = lost
        self.placement = placement
        self._pool = StandbyPool(size=size)
        #: The standby ready for the next launch, if any.
        self.standby: Standby | None = None
        self._filling: Standby | None = None
        self._fill: asyncio.Task[None] | None = None
        #: A launch took the standby: the refill waits until it is confined (``resume``).
        self._deferred: list[Action] = []
        #: The namespaces standbys are made in (``rosey.sandbox.namespaces.premake``): those
        #: the last launch asked for (the fork spawner sets the configuration's at first).
        self.made: Namespaces = None

    def wanted(self) -> None:
        """A fork server is up: fill the pool."""
        self._act(self._pool.on(Event.WANTED))

    def lost(self) -> None:
        """The fork server is gone: what it made goes with it."""
        self._act(self._pool.on(Event.LOST))

    def close(self) -> None:
        """The bot stops: the standby killed, its leaf removed; none made any more."""
        self._act(self._pool.on(Event.CLOSED))

    @property
    def filling(self) -> bool:
        """Whether a standby is being made (or due to be)."""
        return self._fill is not None and not self._fill.done()

    def take(
        self, cwd: str, env: dict[str, str], fds: list[int], made: Namespaces = None
    ) -> Forked | None:
        """Hand the plugin to the ready standby; its pid and its init's (claimed, our
        children), or None.

        ``made``: the namespaces the plugin needs made ahead. A standby made in others is
        discarded (the refill is made in these) and None returned: the caller forks."""
        self.made = made
        standby = self.standby
        if standby is None:
            return None
        self.standby = None
        try:
            if standby.made != made:
                raise OSError(f"made in the namespaces {standby.made}, the plugin asks for {made}")
            standby.assign(cwd, env, fds)
        except OSError as exc:
            log.warning("standby (pid %d) unusable (%s); forking instead", standby.pid, exc)
            self._drop(standby)
            self._act(self._pool.on(Event.DIED))
            return None
        # Not now: its move would hold the kernel's cgroup mutex for a grace period while the
        # plugin that took the standby is confined (its leaf's rename, its limits).
        self._deferred = self._pool.on(Event.TAKEN)
        return Forked(standby.pid, standby.init)

    def resume(self) -> None:
        """The launch that took the standby is done (confined, or failed): refill now."""
        deferred, self._deferred = self._deferred, []
        pool = self._pool
        if deferred and pool.phase is Phase.FILLING and not pool.closed and self._fill is None:
            self._act(deferred)

    def _act(self, actions: list[Action]) -> None:
        """Carry out what the pool asks (``rosey.sandbox.standby.StandbyPool``)."""
        for action in actions:
            if action is Action.DISCARD:
                fill, self._fill = self._fill, None
                if fill is not None and fill is not _current_task():
                    with contextlib.suppress(RuntimeError):  # its loop is closed already
                        fill.cancel()
                if self._filling is not None:
                    self._filling.discard()  # its leaf: the fill removes it, once placed
                if self.standby is not None:
                    self._drop(self.standby)
                self._filling = self.standby = None
            elif action is Action.FILL:
                self._fill = asyncio.get_running_loop().create_task(
                    self._fill_after(refill_delay(self._pool.failures)), name="standby fill"
                )

    def _drop(self, standby: Standby) -> None:
        standby.discard()
        if self.placement is not None:
            self.placement.unplace(standby.pid)

    async def _fill_after(self, delay: float) -> None:
        """Make the next standby: forked, placed in its cgroups, ready; or report the failure."""
        if delay:
            await asyncio.sleep(delay)
        server = self._server()
        if server is None:
            self._act(self._pool.on(Event.LOST))  # none until the server is back (WANTED)
            return
        loop = asyncio.get_running_loop()
        made = self.made
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        standby: Standby | None = None
        try:
            try:
                forked = await server.fork_standby(theirs.fileno(), made)
            finally:
                theirs.close()
            ours.setblocking(False)
            standby = self._filling = Standby(forked, ours, loop, made)  # no await since then
            if self.placement is not None:
                placing = asyncio.ensure_future(
                    asyncio.to_thread(self.placement.place, standby.pid)
                )
                try:
                    await asyncio.shield(placing)
                except asyncio.CancelledError:
                    await asyncio.wait([placing])  # its leaf must exist before it is removed
                    raise
            await standby.ready()
        except BaseException as exc:
            if standby is None:
                ours.close()
            else:
                if self._filling is standby:
                    self._filling = None
                self._drop(standby)
            if not isinstance(exc, OSError):
                raise
            if self._fill is asyncio.current_task():
                self._fill = None
            if server.broken:
                self._on_lost(server, str(exc))  # discards, restarts; the pool refills then
                return
            log.warning("standby: %s; plugins are forked on request meanwhile", exc)
            self._act(self._pool.on(Event.FAILED))
            return
        self._filling, self._fill = None, None
        self.standby = standby
        standby.watch.exited.add_done_callback(lambda _: self._standby_died(standby))
        log.debug("standby ready (pid %d)", standby.pid)
        self._act(self._pool.on(Event.FILLED))

    def _standby_died(self, standby: Standby) -> None:
        if self.standby is not standby:
            return  # taken or discarded: not a standby any more
        log.warning(
            "standby (pid %d) ended on its own (%s); replaced",
            standby.pid,
            describe_exit(standby.watch.returncode or 0),
        )
        self._act(self._pool.on(Event.DIED))

    def stopping(self) -> None:
        """The bot is stopping its plugins: no standby is made from now on (one being made is
        dropped; the ready one, if any, goes with ``close``)."""
        self._pool.closed = True
        fill, self._fill = self._fill, None
        if fill is not None and fill is not _current_task():
            with contextlib.suppress(RuntimeError):
                fill.cancel()
        if self._filling is not None:
            self._filling.discard()  # its leaf: the cancelled fill removes it
            self._filling = None


def _current_task() -> asyncio.Task[object] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:  # no running loop (``close`` after the loop)
        return None
