"""The fork server: ``python -I -m rosey.sandbox.forkserver --socket-fd N --parent-pid P
--entry MODULE:FUNCTION``, a "zygote" that forks plugin processes with the runner preloaded.

Every plugin pays ~90 ms of CPU to import Python, asyncio, nats and the SDK before it does
anything. The fork server pays it once: it imports ``MODULE`` (the runner, ``rosey.sdk.runner``)
and calls its ``preload()``, then waits for requests from the bot on the socket ``N`` (one end
of a ``SOCK_SEQPACKET`` pair; ``rosey.sandbox.forkspawner`` holds the other). A forked child
starts from that state: ready in milliseconds, sharing the imported code's pages.

What it holds is what every plugin may see: imported modules (and what ``preload`` readies
from them, e.g. the compiled seccomp filters). No event loop, no thread, no
connection, no secret (credentials travel bot → plugin on the plugin's control socket, which
passes through here as a file descriptor and is never read), and a scrubbed environment. It is
not dumpable (so neither is anything forked from it: the flag survives ``fork``) and dies with
the bot (``PR_SET_PDEATHSIG``), or when the bot closes its socket.

One request: a JSON object ``{"cwd", "env", "argv"}`` with three descriptors (``SCM_RIGHTS``):
the plugin's end of its control socket, the write ends of its stdout and stderr pipes. The
server forks an intermediate process, which forks the plugin and exits at once (a double fork);
the server reaps the intermediate and answers ``{"pid": PID, "init": null}`` (or
``{"error": "..."}``). The bot is a child subreaper (``rosey.sandbox.orphans``), so the plugin,
orphaned by the intermediate, is the bot's child before the answer is sent: the bot waits for it
and learns its exact exit status, and the fork server's death touches no running plugin. With
``"namespaces": {"pid": true, "ipc": true}`` the intermediate first makes those namespaces and
forks their init, so the plugin is pid 2 inside and needs no waiter outside
(``rosey.sandbox.namespaces.premake``); the answer names init too (``"init": PID``).

A standby request, ``{"standby": true}`` (and the same ``namespaces``) with one descriptor
(its end of a socket pair the bot made), forks the same way a process that has done nothing yet
(``standby``): it waits until the bot is its parent, arms its death signal, checks the bot is
still its parent (else exits), closes every descriptor but that socket, says ``ready`` on it
and waits there for a plugin request (the same JSON object and three descriptors), then
``become``s that plugin. The bot keeps one ahead of time (``rosey.sandbox.standby``), in a cgroup
leaf already: a restart skips the fork and the move.
It holds what a freshly forked child holds before ``become``: no secret, no connection, no loop.

The plugin (``become``): a new session; stdin ``/dev/null``, stdout and stderr its pipes, the
control socket at fd 3, every other descriptor closed (this server's socket included); its data
folder as working directory; ``os.environ`` replaced by its scrubbed environment; no blocked
signal. Then ``FUNCTION(3, P)`` (``rosey.sdk.runner.run_forked``) runs exactly what the plain
runner runs after parsing its arguments: the bootstrap, its death signal (now that the bot is
its parent), the confinement layers, the plugin. Its return value (or ``SystemExit``) is the
exit code, as for a Python process.

Standard library only (and ``rosey.sandbox.prctl``), like the warden: everything imported here
is in every forked plugin.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import importlib
import json
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, NoReturn

from rosey.sandbox import namespaces, prctl

__all__ = [
    "CONTROL_FD",
    "FDS",
    "exit_code",
    "main",
    "parse_request",
    "requested_namespaces",
    "standby",
]

#: Where the plugin finds its control socket.
CONTROL_FD = 3
#: Descriptors per request: control socket, stdout, stderr.
FDS = 3
#: Largest request (the environment is small; a bigger message is refused, not truncated).
REQUEST_MAX = 64 * 1024
#: Exit code of a standby whose bot died before its death signal was armed (or never adopted it).
ORPHANED = 70
#: How long a standby waits for the bot to become its parent (microseconds, normally).
ADOPTION_TIMEOUT = 5.0

Entry = Callable[[int, int], int]


class Forked(NamedTuple):
    """What a request made: the process's pid, and its namespace's init's (None: no PID
    namespace made ahead), both the bot's children; the reply, as a JSON object."""

    pid: int
    init: int | None


def parse_request(data: bytes) -> tuple[str, dict[str, str], list[str]]:
    """``(cwd, env, argv)`` of one request; ``ValueError`` naming what is wrong."""
    request = json.loads(data)
    if not isinstance(request, dict):
        raise ValueError("a request is a JSON object")
    cwd, env, argv = request.get("cwd"), request.get("env"), request.get("argv", [])
    if not isinstance(cwd, str) or not cwd:
        raise ValueError("cwd: a folder is required")
    if not isinstance(env, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in env.items()
    ):
        raise ValueError("env: a mapping of strings to strings is required")
    if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        raise ValueError("argv: a list of strings is required")
    return cwd, env, argv


def requested_namespaces(data: bytes) -> namespaces.Request | None:
    """The namespaces a request asks to be made ahead (its ``namespaces`` field; see
    ``rosey.sandbox.namespaces.premake``); ``ValueError`` naming what is allowed."""
    request = json.loads(data)
    if not isinstance(request, dict):
        raise ValueError("a request is a JSON object")
    return namespaces.parse_request(request.get("namespaces"))


def is_standby_request(data: bytes) -> bool:
    """Whether ``data`` asks for a standby (``{"standby": true}``) rather than a plugin."""
    try:
        request = json.loads(data)
    except ValueError:
        return False
    return isinstance(request, dict) and request.get("standby") is True


def exit_code(code: object) -> int:
    """The exit status of ``SystemExit(code)``, as the interpreter computes it."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    with contextlib.suppress(Exception):
        print(code, file=sys.stderr)
    return 1


def _receive(sock: socket.socket) -> tuple[bytes, list[int]]:
    """One request and its descriptors; ``b""`` at end of file (the bot is gone)."""
    size = socket.CMSG_SPACE(FDS * 4)
    data, ancillary, flags, _ = sock.recvmsg(REQUEST_MAX, size)
    fds: list[int] = []
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(payload) - len(payload) % 4
            fds.extend(
                int.from_bytes(payload[i : i + 4], sys.byteorder) for i in range(0, usable, 4)
            )
    if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
        _close(fds)
        raise ValueError("request too large or too many descriptors")
    return data, fds


def _close(fds: Sequence[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def become(
    cwd: str, env: Mapping[str, str], argv: list[str], fds: Sequence[int], entry: Entry, parent: int
) -> NoReturn:
    """The forked plugin: its own session, descriptors, folder and environment; then ``entry``."""
    code = 1
    try:
        control, stdout, stderr = fds
        os.setsid()
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(stdout, 1)
        os.dup2(stderr, 2)
        if control != CONTROL_FD:
            os.dup2(control, CONTROL_FD)
        os.set_inheritable(CONTROL_FD, True)  # as pass_fds leaves it in the plain spawn
        os.closerange(CONTROL_FD + 1, os.sysconf("SC_OPEN_MAX"))
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)
        sys.argv = [sys.argv[0], *argv]
        code = entry(CONTROL_FD, parent)
    except SystemExit as exc:
        code = exit_code(exc.code)
    except BaseException:
        with contextlib.suppress(Exception):
            sys.excepthook(*sys.exc_info())
        code = 1
    finally:
        _finish()
        os._exit(code)


def _finish() -> None:
    """What the interpreter does at exit before it tears down: wait for non-daemon threads,
    run ``atexit`` callbacks, flush stdout and stderr (``os._exit`` skips all of it; a
    process forked from here must not unwind through the server's frames instead)."""
    shutdown = getattr(threading, "_shutdown", None)
    exit_functions = getattr(atexit, "_run_exitfuncs", None)
    for step in (shutdown, exit_functions):
        if callable(step):
            with contextlib.suppress(BaseException):
                step()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


def standby(sock: socket.socket, entry: Entry, parent: int) -> NoReturn:
    """A process that has done nothing yet, waiting on ``sock`` for the plugin it will be.

    Its death signal is armed only once the bot is its parent, then the parent is checked
    again (``rosey.sandbox.namespaces.await_adoption``): a standby the bot did not adopt leaves.
    """
    try:
        if not namespaces.await_adoption(parent, ADOPTION_TIMEOUT):
            os._exit(ORPHANED)
        keep = sock.fileno()
        os.closerange(3, keep)
        os.closerange(keep + 1, os.sysconf("SC_OPEN_MAX"))
        sock.send(b"ready")
        data, fds = _receive(sock)
        if not data:  # the bot closed its end: discarded
            os._exit(0)
        cwd, env, argv = parse_request(data)
        if len(fds) != FDS:
            raise ValueError(f"a request carries {FDS} descriptors, not {len(fds)}")
    except BaseException:
        os._exit(ORPHANED)
    become(cwd, env, argv, fds, entry, parent)


def fork_plugin(
    cwd: str,
    env: Mapping[str, str],
    argv: list[str],
    fds: Sequence[int],
    entry: Entry,
    parent: int,
    made: namespaces.Request | None = None,
) -> Forked:
    """Double-fork the plugin (into the namespaces ``made`` asks for); its pid (and its init's),
    once the intermediate process is reaped."""
    if len(fds) != FDS:
        raise ValueError(f"a request carries {FDS} descriptors, not {len(fds)}")
    return double_fork(lambda: become(cwd, env, argv, fds, entry, parent), made, parent)


def fork_standby(
    fds: Sequence[int], entry: Entry, parent: int, made: namespaces.Request | None = None
) -> Forked:
    """Double-fork a standby on the one descriptor of its request; its pid (and its init's)."""
    if len(fds) != 1:
        raise ValueError(f"a standby request carries 1 descriptor, not {len(fds)}")
    return double_fork(
        lambda: standby(socket.socket(fileno=os.dup(fds[0])), entry, parent), made, parent
    )


def double_fork(
    child_main: Callable[[], NoReturn], made: namespaces.Request | None = None, parent: int = 0
) -> Forked:
    """Run ``child`` in a grandchild; its pid, once the intermediate process is reaped (from
    then on the bot, the child subreaper, is its parent).

    ``made``: the intermediate first makes these namespaces and, with a PID namespace, forks
    their init (``rosey.sandbox.namespaces.premake``): the grandchild is then pid 2 inside,
    and init, orphaned as well, the bot's child too (its pid is returned with the plugin's:
    the bot ends and reaps it once the plugin has ended). ``parent``: the bot, the child
    subreaper that adopts both (default: the caller, then a subreaper itself)."""
    adopter = parent or os.getpid()
    read_end, write_end = os.pipe()
    # Everything alive here goes to the collector's permanent generation: the plugin's
    # collections (a full one comes sooner or later) never walk, and so never write to, the
    # pages it shares with this server. Measured: a trivial plugin's own USS after one
    # gc.collect(), ~10 MiB without this, ~5.5 MiB with it.
    gc.freeze()
    try:
        # Without the interpreter's at-fork work (this server has one thread): every page the
        # intermediate writes is one the plugin it forks holds as its own.
        intermediate = namespaces.fork_bare()
    except OSError:
        _close((read_end, write_end))
        raise
    if intermediate == 0:  # the intermediate: fork the plugin, tell its pid, go
        try:
            os.close(read_end)
            init, go = (namespaces.premake(made, adopter) if made is not None else None) or (0, -1)
            child = os.fork()
            if child == 0:
                os.close(write_end)
                if go >= 0:
                    os.close(go)
                child_main()
            if go >= 0:
                os.close(go)  # init may look for its sibling now
            os.write(write_end, f"{child} {init}".encode())
        finally:
            os._exit(0)
    os.close(write_end)
    try:
        data = b""
        while chunk := os.read(read_end, 32):
            data += chunk
    finally:
        os.close(read_end)
    os.waitpid(intermediate, 0)  # from here on the plugin is the bot's child
    if not data:
        raise OSError("the fork failed (no pid came back)")
    child, init = map(int, data.split())
    return Forked(child, init or None)


def serve(sock: socket.socket, entry: Entry, parent: int) -> int:
    """Answer requests until the bot closes its end; the exit code."""
    while True:
        try:
            data, fds = _receive(sock)
        except ValueError as exc:
            sock.send(json.dumps({"error": str(exc)}).encode())
            continue
        except OSError:
            return 0
        if not data:
            _close(fds)
            return 0
        reply: dict[str, Any]
        try:
            made = requested_namespaces(data)
            if is_standby_request(data):
                reply = fork_standby(fds, entry, parent, made)._asdict()
            else:
                cwd, env, argv = parse_request(data)
                reply = fork_plugin(cwd, env, argv, fds, entry, parent, made)._asdict()
        except (OSError, ValueError) as exc:
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        finally:
            _close(fds)
        try:
            sock.send(json.dumps(reply).encode())
        except OSError:
            return 0


def settle_types() -> None:
    """Give every class loaded here its method-cache version tag now.

    The interpreter tags a class (two words of the class object) the first time an attribute
    lookup goes through its cache: done here once, a forked plugin does not write them into
    the hundreds of class objects it shares with this server (measured: ~60 KiB less of a
    trivial plugin's own memory, for about 5 ms here at start).
    """
    probe = "__rosey_version_tag__"
    for found in gc.get_objects():
        if isinstance(found, type):
            with contextlib.suppress(Exception):  # a metaclass's __getattr__ may object
                getattr(found, probe, None)


def _option(argv: list[str], name: str) -> str:
    try:
        return argv[argv.index(name) + 1]
    except (ValueError, IndexError):
        raise SystemExit(f"rosey fork server: {name} is required") from None


def main(argv: list[str]) -> int:
    fd = int(_option(argv, "--socket-fd"))
    parent = int(_option(argv, "--parent-pid"))
    module_name, _, function = _option(argv, "--entry").partition(":")
    # Not Linux (no prctl): the socket's end of file still ends us.
    with contextlib.suppress(OSError):
        prctl.set_dumpable(False)  # inherited by every fork: plugins are born undumpable
    with contextlib.suppress(OSError):
        prctl.set_death_signal(signal.SIGKILL)
    if os.getppid() != parent:  # the bot died before the death signal was armed
        return 70
    module = importlib.import_module(module_name)
    entry: Entry = getattr(module, function)
    preload = getattr(module, "preload", None)
    if callable(preload):
        preload()
    settle_types()
    sock = socket.socket(fileno=fd)
    sock.send(json.dumps({"ready": os.getpid()}).encode())
    return serve(sock, entry, parent)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
