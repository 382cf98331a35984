"""Killing whole process trees: every process in a cgroup, a process group, one checked pid.

Shared by the manager (stopping one plugin) and the warden (cleaning up after a dead bot), so
it imports only ``os``, ``signal`` and ``time``: the warden must start in a few milliseconds.

A cgroup catches what a process group cannot: a grandchild that called ``setsid()`` is in a
new session and process group but still in its parent's cgroup. With ``cgroup.kill`` (v2,
also the unified hierarchy of a hybrid host) one write kills the subtree atomically; on v1 we
SIGKILL every pid in ``cgroup.procs`` and read again until it stays empty (a process cannot
fork once SIGKILL is pending, so each pass only meets children forked before the last one).
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time


def cgroup_pids(path: str) -> list[int]:
    """Every pid in the cgroup at ``path`` and its descendants (none if it is gone)."""
    pids: list[int] = []
    for folder, _, files in os.walk(path):
        if "cgroup.procs" not in files:
            continue
        try:
            with open(os.path.join(folder, "cgroup.procs")) as fh:
                pids.extend(int(line) for line in fh if line.strip())
        except (OSError, ValueError):
            continue
    return pids


def kill_cgroup(path: str, timeout: float = 2.0, *, wait: bool = True) -> int:
    """SIGKILL every process in the cgroup at ``path`` (and below) until it is empty.

    Returns how many processes were found in it; bounded by ``timeout`` seconds.
    ``wait=False``: return once every process in it has been sent SIGKILL (one ``cgroup.kill``
    write, which also kills what is being forked meanwhile; else passes until one finds no
    process not killed yet: one with SIGKILL pending forks no more), not once they are gone:
    a killed tree leaves in its own time, which a restart need not wait for.
    """
    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    killer = os.path.join(path, "cgroup.kill")
    use_kill_file = os.path.exists(killer)
    pause = 0.0005
    while True:
        pids = cgroup_pids(path)
        fresh = [pid for pid in pids if pid not in seen]
        if not pids or not (wait or fresh):
            return len(seen)
        seen.update(pids)
        if use_kill_file:
            try:
                with open(killer, "w") as fh:
                    fh.write("1")
            except OSError:
                use_kill_file = False
            else:
                if not wait:
                    return len(seen)
        if not use_kill_file:
            for pid in pids if wait else fresh:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        if time.monotonic() >= deadline:
            return len(seen)
        if wait:
            time.sleep(pause)
        pause = min(pause * 2, 0.02)


def remove_cgroup(path: str, timeout: float = 1.0) -> bool:
    """Remove the cgroup at ``path`` and every cgroup below it; False if some stayed (busy)."""
    deadline = time.monotonic() + timeout
    while True:
        busy = False
        for folder, _, _ in os.walk(path, topdown=False):
            try:
                os.rmdir(folder)
            except FileNotFoundError:
                pass
            except OSError as exc:
                if exc.errno != errno.EBUSY:
                    return False
                busy = True
        if not busy or time.monotonic() >= deadline:
            return not busy
        time.sleep(0.005)


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (tells a pid from a reused one)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    fields = stat[stat.rfind(b")") + 2 :].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def kill_pid(pid: int, started: int | None) -> bool:
    """SIGKILL ``pid`` if it is still the process that started at ``started``."""
    if started is not None and start_time(pid) != started:
        return False
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        return False
    return True


def kill_group(pgid: int, signum: int = signal.SIGKILL) -> bool:
    """Signal process group ``pgid``; False if it has no member left."""
    try:
        os.killpg(pgid, signum)
    except OSError:
        return False
    return True
