"""``prctl(2)`` through ctypes: die with the parent, and keep other processes out of our memory.

The one place every process Rosey starts arms these (the plugin runner and its namespace
helpers, the warden, the embedded nats-server's ``preexec_fn``):

- ``PR_SET_PDEATHSIG``: the kernel sends a signal when the *thread* that forked us exits, even
  by SIGKILL. ``fork`` clears it, and so does every change of credentials, so it is armed again
  after ``setuid`` and in each forked helper;
- ``PR_SET_DUMPABLE``: 0 keeps same-uid processes from ``ptrace`` and ``/proc/PID/mem`` (and
  makes ``/proc/self/*_map`` root's, which is why the user-namespace setup raises it briefly).

Standard library only, and only ``ctypes``, ``os`` and ``sys``: the plugin process and the
warden import it before anything else, and both must start within milliseconds. Off Linux,
or without a libc ``prctl``, the calls are no-ops that say so (``available()`` is False):
callers keep their other layers (the warden, the control channel's end of file).
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Callable

__all__ = [
    "PR_SET_DUMPABLE",
    "PR_SET_PDEATHSIG",
    "available",
    "die_with_parent_hook",
    "prctl",
    "set_death_signal",
    "set_dumpable",
]

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4

_Prctl = Callable[..., int]


def _load() -> _Prctl | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        function: _Prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return function


_prctl = _load()


def available() -> bool:
    """True when this platform has ``prctl`` (Linux with a loadable libc)."""
    return _prctl is not None


def prctl(option: int, arg2: int = 0) -> None:
    """``prctl(option, arg2, 0, 0, 0)``; ``OSError`` with the kernel's errno when refused or
    when there is no ``prctl`` here."""
    if _prctl is None:
        raise OSError(0, "prctl is not available on this platform")
    if _prctl(option, arg2, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl({option}): {os.strerror(errno)}")


def set_death_signal(signum: int) -> None:
    """Receive ``signum`` when the parent (its forking thread) dies; ``OSError`` if refused."""
    prctl(PR_SET_PDEATHSIG, signum)


def set_dumpable(dumpable: bool) -> None:
    """Allow (True) or forbid (False) core dumps, ``ptrace`` and ``/proc/PID/mem`` by others."""
    prctl(PR_SET_DUMPABLE, 1 if dumpable else 0)


def die_with_parent_hook(signum: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` that arms ``signum`` as the death signal in the forked child; None
    where there is no ``prctl``.

    Everything it needs is prepared here, before the fork: the child only makes two syscalls
    (no allocation, no locks, which a forked child of a threaded parent must not take). If the
    parent died before the request took effect, the child exits at once.
    """
    if _prctl is None:
        return None
    function = _prctl
    option, sig, zero = ctypes.c_int(PR_SET_PDEATHSIG), ctypes.c_ulong(signum), ctypes.c_ulong(0)
    parent = os.getpid()

    def hook() -> None:
        if function(option, sig, zero, zero, zero) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent:  # the parent died before the request took effect
            os._exit(1)

    return hook
