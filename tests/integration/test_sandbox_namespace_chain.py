"""The real waiter → init → plugin chain in a child interpreter: exit codes and signals come
out exactly as the plugin ended (``rosey.sandbox.namespaces``)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import pytest

_CHAIN = textwrap.dedent(
    """
    import os, signal, sys
    from rosey.sandbox import namespaces

    outcome = namespaces.enter(namespaces.Request(pid=True, ipc=True))
    assert outcome.flags & namespaces.CLONE_NEWPID, outcome.missing
    namespaces.branch()  # returns only in the plugin
    assert (os.getpid(), os.getppid()) == (2, 1)
    how = sys.argv[1]
    if how.startswith("exit"):
        os._exit(int(how[4:]))
    os.kill(os.getpid(), int(how[6:]))  # "signal9": an ordinary process, so this works
    os._exit(99)
    """
)


@pytest.mark.parametrize(
    ("how", "returncode"),
    [
        ("exit0", 0),
        ("exit3", 3),
        ("signal9", -signal.SIGKILL),
        ("signal15", -signal.SIGTERM),
        ("signal6", -signal.SIGABRT),
    ],
)
def test_the_waiter_ends_as_the_plugin_did(how: str, returncode: int) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _CHAIN, how], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == returncode, done.stderr
