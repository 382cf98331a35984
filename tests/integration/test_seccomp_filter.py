"""The seccomp filter installed for real, in a child process that then tries what it refuses.

A child (not this test process: a filter cannot be lifted) installs ``seccomp.install`` and
reports, as JSON, what each attempt gave. The same probe without the filter shows each attempt
would have worked, so the test fails if the filter stops refusing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

PROBE = textwrap.dedent(
    """
    import ctypes, json, os, resource, socket, subprocess, sys
    from rosey.sandbox import seccomp

    filtered = sys.argv[1] == "on"
    target = int(sys.argv[2])
    layers = seccomp.install(network=False) if filtered else []
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    nr = seccomp.current_arch().numbers
    out = {"layers": layers}

    def attempt(name, fn):
        try:
            fn()
            out[name] = "ok"
        except OSError as exc:
            out[name] = os.strerror(exc.errno) if exc.errno else str(exc)

    def raw(name, *args):
        def call():
            if libc.syscall(ctypes.c_long(nr[name]), *map(ctypes.c_long, args)) < 0:
                raise OSError(ctypes.get_errno(), name)
        return call

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # prlimit on another process (here: a sleeping sibling the test started), without changing
    # anything: the same values it has.
    attempt("prlimit_other", lambda: resource.prlimit(target, resource.RLIMIT_NOFILE, (soft, hard)))
    attempt("setrlimit_self", lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard)))
    attempt("setpriority_other", lambda: os.setpriority(os.PRIO_PROCESS, target, 0))
    def add_key():
        args = (b"user", b"rosey-probe", b"x")
        if libc.syscall(ctypes.c_long(nr["add_key"]), *args, ctypes.c_size_t(1),
                        ctypes.c_long(-2)) < 0:  # KEY_SPEC_PROCESS_KEYRING
            raise OSError(ctypes.get_errno(), "add_key")
    attempt("add_key", add_key)
    attempt("msgget", raw("msgget", 0, 0o1600))
    attempt("shmget", raw("shmget", 0, 4096, 0o1600))
    attempt("udp", lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).close())
    attempt("unix", lambda: socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).close())
    attempt("tcp", lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM).close())
    attempt("socketpair", lambda: [s.close() for s in socket.socketpair()])
    attempt("unshare", raw("unshare", 0x08000000))
    attempt("subprocess", lambda: subprocess.run(["true"], check=True))
    def fork():
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
    attempt("fork", fork)
    print(json.dumps(out))
    """
)
REFUSED = [
    "prlimit_other", "setpriority_other", "add_key", "msgget", "shmget", "udp", "unix", "unshare",
]  # fmt: skip
STILL_WORKS = ["setrlimit_self", "tcp", "socketpair", "subprocess", "fork"]


def probe(filtered: bool) -> dict[str, object]:
    sibling = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                               stdin=subprocess.PIPE)  # fmt: skip
    try:
        done = subprocess.run(
            [sys.executable, "-c", PROBE, "on" if filtered else "off", str(sibling.pid)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        assert sibling.stdin is not None
        sibling.stdin.close()
        sibling.wait(timeout=10)
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


@pytest.fixture(scope="module")
def unfiltered() -> dict[str, object]:
    return probe(filtered=False)


@pytest.fixture(scope="module")
def filtered() -> dict[str, object]:
    return probe(filtered=True)


@pytest.mark.parametrize("attempt", REFUSED)
def test_the_filter_refuses(
    attempt: str, filtered: dict[str, object], unfiltered: dict[str, object]
) -> None:
    assert unfiltered[attempt] == "ok", "the probe must work without the filter"
    assert filtered[attempt] == os.strerror(1), filtered  # EPERM: "Operation not permitted"


@pytest.mark.parametrize("attempt", STILL_WORKS)
def test_ordinary_work_goes_on(attempt: str, filtered: dict[str, object]) -> None:
    assert filtered[attempt] == "ok", filtered


def test_the_layer_is_named(filtered: dict[str, object]) -> None:
    assert filtered["layers"] == ["seccomp"]
