"""Reading the mount table and unmounting, with nothing but the standard library.

Shared by the data-folder quota (``rosey.sandbox.quota``: which data folders are mounted, stale
mounts of a crashed bot) and the warden (``rosey.sandbox.warden``: unmount them when the bot
dies), so it imports only ``ctypes``, ``os`` and ``dataclasses``: the warden must start in a
few milliseconds.

Unmounting goes through ``umount2(2)`` directly. A data-folder image is mounted with
``mount -o loop``, which sets the loop device's *autoclear* flag: the kernel frees the loop
device as soon as the filesystem is no longer mounted (after a lazy unmount: once its last
open file is closed), so unmounting is the whole clean-up.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

MNT_DETACH = 2  # umount2 flag: detach now, finish when the filesystem is no longer busy


@dataclass(frozen=True)
class MountEntry:
    """One line of ``/proc/self/mountinfo`` (the fields we use)."""

    target: str
    fstype: str
    source: str


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as ``\\ooo`` octal escapes."""
    if "\\" not in field:
        return field  # nearly every field: no character-by-character walk
    out: list[str] = []
    i = 0
    while i < len(field):
        chunk = field[i : i + 4]
        if chunk[:1] == "\\" and len(chunk) == 4 and chunk[1:].isdigit():
            out.append(chr(int(chunk[1:], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[MountEntry]:
    """The entries of a ``mountinfo`` text, in order (later mounts stack on earlier ones).

    A line is ``ID PARENT MAJ:MIN ROOT TARGET OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER``;
    malformed lines are skipped.
    """
    entries: list[MountEntry] = []
    for line in text.splitlines():
        fields = line.split(" ")
        try:
            dash = fields.index("-", 6)
            entries.append(
                MountEntry(_unescape(fields[4]), fields[dash + 1], _unescape(fields[dash + 2]))
            )
        except (ValueError, IndexError):
            continue
    return entries


def read_mounts(path: str = "/proc/self/mountinfo") -> list[MountEntry]:
    """This process's mount table (empty when it cannot be read)."""
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as fh:
            return parse_mountinfo(fh.read())
    except OSError:
        return []


def mounts_under(entries: list[MountEntry], folder: str) -> list[MountEntry]:
    """The mounts at ``folder`` or below it, deepest first (the order to unmount them in)."""
    prefix = folder.rstrip("/") + "/"
    found = [e for e in entries if e.target == folder.rstrip("/") or e.target.startswith(prefix)]
    return sorted(found, key=lambda e: e.target.count("/"), reverse=True)


def mount_at(entries: list[MountEntry], target: str) -> MountEntry | None:
    """The topmost mount at exactly ``target`` (what a path lookup there sees), if any."""
    found = [e for e in entries if e.target == target.rstrip("/")]
    return found[-1] if found else None


def unmount_all(
    targets: Sequence[str],
    one: Callable[[str], None] | None = None,
    *,
    lazy: bool = False,
    threads: int = 8,
) -> dict[str, OSError]:
    """Unmount every target with ``one`` (default: ``unmount(target, lazy=lazy)``), up to
    ``threads`` at once; the failures, by target.

    An unmount spends ~1 ms waiting in the kernel (an RCU grace period) and ~0.3 ms of CPU:
    one after the other, 100 data folders took 90-250 ms; overlapped, 45-75 ms (2 cores)."""
    import threading  # here: the warden imports this module and must start fast

    work = one if one is not None else (lambda target: unmount(target, lazy=lazy))
    pending = list(targets)
    failed: dict[str, OSError] = {}
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                if not pending:
                    return
                target = pending.pop()
            try:
                work(target)
            except OSError as exc:
                with lock:
                    failed[target] = exc

    workers = [threading.Thread(target=worker) for _ in range(min(threads, len(pending)) - 1)]
    for thread in workers:
        thread.start()
    worker()  # this thread takes its share too
    for thread in workers:
        thread.join()
    return failed


_libc: list[ctypes.CDLL] = []  # loaded on first use


def libc() -> ctypes.CDLL:
    """The C library with ``mount``/``umount2`` typed, loaded once (not per call: a data
    folder is mounted at every plugin start and unmounted at every stop)."""
    if not _libc:
        lib = ctypes.CDLL(None, use_errno=True)
        lib.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
        lib.mount.restype = ctypes.c_int
        _libc.append(lib)
    return _libc[0]


def unmount(target: str, *, lazy: bool = False) -> None:
    """``umount2(target)``; ``lazy`` detaches a busy mount (``MNT_DETACH``); ``OSError``."""
    if libc().umount2(os.fsencode(target), MNT_DETACH if lazy else 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno), target)
