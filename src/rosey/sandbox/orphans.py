"""The bot as child subreaper, and the orphans that makes its own to reap.

A plugin forked by the fork server is orphaned by the server's intermediate process on purpose
(``rosey.sandbox.forkserver``): with ``PR_SET_CHILD_SUBREAPER`` set on the bot, the kernel makes
the bot its parent, so the bot waits for it itself (exact exit status) and the fork server's
death cannot touch it. The price: every other process orphaned below the bot comes to the bot
too (a plugin's child whose parent died; a namespace's init when its waiter is killed first,
``rosey.sandbox.namespaces``), and would stay a zombie, since nobody waits for a pid it did not
start.

``OrphanReaper`` reaps them without stealing a status someone waits for. On ``SIGCHLD`` (one
sweep for the exits of 50 ms) it lists the bot's zombie children in ``/proc`` (its threads'
``children`` files, then the state of each unclaimed child: a few reads per sweep). The pids it was
told are claimed (the forked plugins, which ``rosey.sandbox.exits.ExitWatch`` reaps) are never
touched.
Every other waiter in the bot (asyncio's child watcher, ``subprocess``) blocks in ``waitpid`` on
its own pid and reaps it within milliseconds of its exit; a zombie still there 250 ms later
(``GRACE``) therefore has no waiter, and is reaped. Nothing polls while nothing exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Collection

from rosey.sandbox import prctl

__all__ = ["GRACE", "PR_SET_CHILD_SUBREAPER", "OrphanReaper", "parse_stat", "reaper"]

log = logging.getLogger("rosey.sandbox")

PR_SET_CHILD_SUBREAPER = 36
#: How long a zombie child nobody claimed may wait for its own waiter before we reap it.
GRACE = 0.25
#: How soon after a SIGCHLD the sweep runs (coalescing many exits into one sweep).
_DEBOUNCE = 0.05


def parse_stat(stat: bytes) -> tuple[str, int] | None:
    """``(state, ppid)`` from the text of ``/proc/PID/stat``; None if it is not one."""
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    fields = stat[stat.rfind(b")") + 2 :].split()
    try:
        return fields[0].decode(), int(fields[1])
    except (IndexError, ValueError, UnicodeDecodeError):
        return None


def zombie_children(parent: int, skip: Collection[int] = ()) -> list[int]:
    """The zombies whose parent is ``parent``, from ``/proc`` (``skip``: pids not to look at).

    Only ``parent``'s own children are read, from ``/proc/PARENT/task/*/children`` (each
    thread's children: a subprocess started from a worker thread is that thread's child): a
    sweep costs a few reads, not one per process on the machine (with 100 plugins, ~700).
    Without that file (``CONFIG_PROC_CHILDREN``) every ``/proc/PID/stat`` is read.
    """
    candidates = _children(parent)
    if candidates is None:
        candidates = _all_pids()
    found: list[int] = []
    for pid in candidates:
        if pid in skip:
            continue
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                parsed = parse_stat(fh.read())
        except OSError:
            continue
        if parsed is not None and parsed[0] == "Z" and parsed[1] == parent:
            found.append(pid)
    return found


def _children(parent: int) -> list[int] | None:
    """The children of every thread of ``parent``; None when the kernel cannot list them."""
    try:
        tasks = os.listdir(f"/proc/{parent}/task")
    except OSError:
        return None
    pids: list[int] = []
    for task in tasks:
        try:
            with open(f"/proc/{parent}/task/{task}/children", "rb") as fh:
                pids.extend(int(pid) for pid in fh.read().split())
        except FileNotFoundError:
            if not os.path.exists(f"/proc/{parent}/task/{task}"):
                continue  # the thread ended meanwhile
            return None  # no CONFIG_PROC_CHILDREN
        except (OSError, ValueError):
            continue
    return pids


def _all_pids() -> list[int]:
    try:
        with os.scandir("/proc") as entries:
            return [int(entry.name) for entry in entries if entry.name.isdigit()]
    except OSError:
        return []


class OrphanReaper:
    """Child subreaper for this process while at least one user needs it; reaps orphans."""

    def __init__(self) -> None:
        self.claimed: set[int] = set()
        self._users = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._first_seen: dict[int, float] = {}
        self._timer: asyncio.TimerHandle | None = None

    def acquire(self) -> bool:
        """Become (or stay) the child subreaper, reaping on SIGCHLD in the running loop.

        False when the kernel refuses (not Linux, no ``prctl``): no fork server then.
        """
        loop = asyncio.get_running_loop()
        if self._users == 0:
            try:
                prctl.prctl(PR_SET_CHILD_SUBREAPER, 1)
            except OSError as exc:
                log.warning("sandbox: cannot become the child subreaper: %s", exc)
                return False
        if self._loop is not loop or loop.is_closed():
            self._loop = loop
            try:
                loop.add_signal_handler(signal.SIGCHLD, self.poke)
            except (RuntimeError, ValueError) as exc:  # not the main thread's loop
                log.info("sandbox: orphans are reaped as plugins exit only (%s)", exc)
        self._users += 1
        return True

    def release(self) -> None:
        """One user fewer; the last one ends the subreaper role (orphans go to init again)."""
        self._users = max(0, self._users - 1)
        if self._users:
            return
        with contextlib.suppress(OSError):
            prctl.prctl(PR_SET_CHILD_SUBREAPER, 0)
        loop, self._loop = self._loop, None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError, ValueError):
                loop.remove_signal_handler(signal.SIGCHLD)
        self.sweep()

    def poke(self) -> None:
        """A child exited: sweep soon (many exits within ``_DEBOUNCE`` make one sweep)."""
        if self._timer is None and self._loop is not None and not self._loop.is_closed():
            self._timer = self._loop.call_later(_DEBOUNCE, self._timed_sweep)

    def _timed_sweep(self) -> None:
        self._timer = None
        due = self.sweep()
        if due is not None and self._loop is not None and not self._loop.is_closed():
            self._timer = self._loop.call_later(due, self._timed_sweep)

    def sweep(self, now: float | None = None) -> float | None:
        """Reap unclaimed zombie children seen at least ``GRACE`` ago; seconds until the next
        one is due (None: nothing waits)."""
        now = time.monotonic() if now is None else now
        zombies = zombie_children(os.getpid(), skip=self.claimed)
        pending: dict[int, float] = {}
        for pid in zombies:
            seen = self._first_seen.get(pid, now)
            if now - seen < GRACE:
                pending[pid] = seen
                continue
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
        self._first_seen = pending
        if not pending:
            return None
        return min(pending.values()) + GRACE - now + 0.01


#: The process's one reaper (the subreaper role is per process).
reaper = OrphanReaper()
