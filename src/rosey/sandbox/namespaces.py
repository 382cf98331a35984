"""Namespaces around a plugin: its own PID and IPC namespaces (and a user namespace if needed).

Landlock cannot see every call that reaches another process: ``prlimit64`` on a pid, ``getsid``,
``getpgid``, ``sched_setaffinity``, SysV IPC. A PID namespace makes every process outside the
plugin's tree unnameable (those calls answer ``ESRCH``), and when its first process dies the
kernel kills everything left inside, ``setsid`` escapees included. An IPC namespace gives the
plugin its own, empty, SysV IPC and POSIX message queue world.

The runner does it to itself, after reading its bootstrap and before any plugin code:

1. ``enter`` unshares ``CLONE_NEWPID | CLONE_NEWIPC``; without root it adds ``CLONE_NEWUSER``
   and maps its own uid and gid (the only thing an unprivileged process may map), which is
   what lets it create the other two;
2. ``branch`` forks twice. The runner the manager spawned stays outside as the *waiter*: it
   runs no plugin code, waits and ends exactly as the plugin did (``relay_plan``), so the
   manager sees "exit 1" or "signal 9" as before. Its child is *init*, pid 1 inside, which only
   reaps. Init's child is the plugin, pid 2: an ordinary process, so a plugin that kills
   itself, aborts or gets SIGTERM before its handlers are installed dies as it always did
   (pid 1 ignores every signal it has no handler for, SIGKILL from inside included). Both
   forks skip the interpreter's at-fork work (``fork_bare``), and the waiter and init run as
   little Python as they can (they never return from ``branch``): what they write of the pages
   they share is copied for them.

The plugin leads a session and process group of its own (as the runner did). The manager's
SIGTERM/SIGINT to the runner's group (or to the waiter's pid) reaches the waiter, which passes
it to init (as SIGUSR1/SIGUSR2: init ignores the group's own copy), which passes it to the
plugin's group: it arrives there once. SIGKILL to the group ends the waiter and init,
and with init everything inside. Init dies with the waiter (death signal); the waiter dies with
the manager.

**Made ahead by the fork server** (``premake``): a plugin forked from the fork server needs
no waiter. The server's intermediate process (``rosey.sandbox.forkserver.double_fork``) unshares
the namespaces itself, forks init first (pid 1) and the runner second (pid 2), and exits: both
are orphaned to the bot (the child subreaper), so the runner *is* the plugin, the bot's child,
and the bot reads its exact exit status itself (no relay: the plugin killed by a signal is
seen dying of it). Init (``init_beside``) runs no plugin code: it ignores ``SIGCHLD`` (the kernel
then reaps the orphans re-parented to it at once), dies with the bot and becomes
``sleep infinity``; the bot ends it once the plugin has ended, and the kernel then kills
whatever is left inside. The runner learns what was made from ``PREMADE`` (inherited
memory), and its pid as the bot knows it from ``/proc`` (``outside_pid``; ``getppid`` is 0
inside). One process fewer per plugin: the waiter's fork,
memory and exit (~1 ms of CPU each, paid by every plugin at the same moment when the bot stops),
and an init that holds next to no memory.

Standard library only (ctypes): this runs in the plugin process before the SDK is imported.
Pure parts (``flags_for``, ``id_map``, ``layer_names``, ``relay_plan``, ``parse_request``) are
table-tested.
"""

from __future__ import annotations

import _thread
import contextlib
import ctypes
import gc
import importlib
import os
import select
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NoReturn

from rosey.sandbox import prctl

CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000


@dataclass(frozen=True)
class Request:
    """Which namespaces the manager asked for (bootstrap field ``isolation``)."""

    pid: bool = True
    ipc: bool = True


@dataclass
class Outcome:
    """What ``enter`` achieved: layer names in force, and what is missing with the reason."""

    flags: int = 0
    layers: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Premade:
    """The namespaces the fork server made before forking this process (``premake``): what
    was asked, and what came of it (``error``: ``enter`` raised; the runner fails the start)."""

    request: Request
    outcome: Outcome
    error: str | None = None


#: Set in a process forked into namespaces the fork server made (``premake``); None otherwise.
PREMADE: Premade | None = None


def parse_request(value: object) -> Request | None:
    """The ``namespaces`` field of a fork server request: ``{"pid": bool, "ipc": bool}``, or
    None/absent for none; ``ValueError`` naming what is allowed."""
    if value is None:
        return None
    if not (
        isinstance(value, dict)
        and set(value) <= {"pid", "ipc"}
        and all(isinstance(v, bool) for v in value.values())
    ):
        raise ValueError('namespaces: null or an object {"pid": bool, "ipc": bool} is required')
    return Request(pid=value.get("pid", False), ipc=value.get("ipc", False))


def flags_for(request: Request, *, root: bool) -> int:
    """The ``unshare`` flags for ``request``; a user namespace only when not root and needed."""
    flags = (CLONE_NEWPID if request.pid else 0) | (CLONE_NEWIPC if request.ipc else 0)
    if flags and not root:
        flags |= CLONE_NEWUSER
    return flags


def layer_names(flags: int) -> list[str]:
    """Status names of the namespaces in ``flags`` (``userns``, ``pidns``, ``ipcns``)."""
    names = [("userns", CLONE_NEWUSER), ("pidns", CLONE_NEWPID), ("ipcns", CLONE_NEWIPC)]
    return [name for name, bit in names if flags & bit]


def id_map(inside: int, outside: int) -> str:
    """A one-line ``uid_map``/``gid_map``: the only mapping an unprivileged process may write."""
    return f"{inside} {outside} 1\n"


_LIBC: list[ctypes.CDLL] = []


def _libc() -> ctypes.CDLL:
    """The C library, loaded once per process: the fork server loads it (``prepare``), so that
    neither its intermediate process (``premake``) nor a forked runner builds it again (a new
    ``CDLL`` makes classes: pages the plugin would then hold as its own)."""
    if not _LIBC:
        _LIBC.append(ctypes.CDLL(None, use_errno=True))
    return _LIBC[0]


def prepare() -> None:
    """Load the C library and look up ``unshare``, and find the program init becomes (the fork
    server, once)."""
    _libc().unshare.restype = ctypes.c_int
    for folder in ("/usr/bin", "/bin"):
        if os.access(f"{folder}/sleep", os.X_OK):
            _WAIT[:] = [f"{folder}/sleep"]
            break


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _unshare(libc: ctypes.CDLL, flags: int) -> None:
    if libc.unshare(flags) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"unshare: {os.strerror(errno)}")


def enter(request: Request) -> Outcome:
    """Unshare the namespaces asked for; the next ``fork`` puts its child inside.

    A namespace the host refuses (user namespaces disabled, no privilege) is reported in
    ``Outcome.missing`` with the kernel's reason, and the plugin runs without it. Raises
    ``OSError`` only when a user namespace was made but its uid map refused: the process would
    then run as nobody, so the runner fails the start instead.
    """
    root = os.geteuid() == 0
    flags = flags_for(request, root=root)
    outcome = Outcome()
    if not flags:
        return outcome
    try:
        libc = _libc()
    except OSError as exc:
        outcome.missing = [f"{name}: {exc}" for name in layer_names(flags)]
        return outcome
    if flags & CLONE_NEWUSER:
        uid, gid = os.geteuid(), os.getegid()
        # /proc/self/{uid,gid}_map belong to root while the process is not dumpable.
        with contextlib.suppress(OSError):
            prctl.set_dumpable(True)
        try:
            try:
                _unshare(libc, CLONE_NEWUSER)
            except OSError as exc:
                outcome.missing = [f"{name}: {exc.strerror}" for name in layer_names(flags)]
                return outcome
            try:
                _write("/proc/self/setgroups", "deny\n")
                _write("/proc/self/uid_map", id_map(uid, uid))
                _write("/proc/self/gid_map", id_map(gid, gid))
            except OSError as exc:
                raise OSError(exc.errno, f"user namespace without a uid map: {exc}") from exc
        finally:
            with contextlib.suppress(OSError):
                prctl.set_dumpable(False)
        outcome.flags |= CLONE_NEWUSER
    rest = flags & ~CLONE_NEWUSER
    try:
        _unshare(libc, rest)
    except OSError as exc:
        outcome.missing = [f"{name}: {exc.strerror}" for name in layer_names(rest)]
    else:
        outcome.flags |= rest
    outcome.layers = layer_names(outcome.flags)
    return outcome


#: Host settings that decide whether an unprivileged process may make a user namespace.
USERNS_SYSCTLS = {
    name: f"/proc/sys/{where}/{name}"
    for where, name in (
        ("user", "max_user_namespaces"),
        ("kernel", "unprivileged_userns_clone"),
        ("kernel", "apparmor_restrict_unprivileged_userns"),
    )
}


def userns_refusal(root: bool, sysctls: dict[str, str]) -> str | None:
    """Why this host will refuse the user namespace an unprivileged bot needs (None: it will
    not, as far as these settings tell). ``sysctls``: name → value, absent when not present."""
    if root:
        return None
    if sysctls.get("max_user_namespaces", "1").strip() == "0":
        return "user namespaces are disabled (user.max_user_namespaces = 0)"
    if sysctls.get("unprivileged_userns_clone", "1").strip() == "0":
        return "unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone = 0)"
    if sysctls.get("apparmor_restrict_unprivileged_userns", "0").strip() == "1":
        return "AppArmor restricts unprivileged user namespaces"
    return None


def host_note() -> str | None:
    """``userns_refusal`` for this host and process: logged once by the sandbox at start."""
    found: dict[str, str] = {}
    for name, path in USERNS_SYSCTLS.items():
        with contextlib.suppress(OSError), open(path) as file:
            found[name] = file.read()
    reason = userns_refusal(os.geteuid() == 0, found)
    if reason is None:
        return None
    return (
        f"{reason}: plugins get no PID or IPC namespace (status shows missing:pidns, "
        "missing:ipcns); run the bot as root or allow user namespaces"
    )


# --- the waiter -------------------------------------------------------------------------


def relay_plan(exitcode: int, note: int | None) -> tuple[Literal["exit", "signal"], int]:
    """How the waiter ends, given how the child did.

    ``exitcode`` as ``os.waitstatus_to_exitcode`` gives it (negative: killed by that signal);
    ``note``: the signal init said the plugin died of (``init_loop``), if any.
    """
    if exitcode < 0:
        return "signal", -exitcode
    if note is not None and exitcode == 0 and 0 < note < signal.NSIG:
        return "signal", note
    return "exit", exitcode


def _die_like(kind: Literal["exit", "signal"], number: int) -> NoReturn:
    """Exit with ``number``, or die of signal ``number`` with its default action.

    No flushing: the waiter wrote nothing, and its copies of stdio buffers are the child's.
    """
    if kind == "signal":
        with contextlib.suppress(OSError, ValueError):  # SIGKILL has no handler to reset
            signal.signal(number, signal.SIG_DFL)
        with contextlib.suppress(OSError, ValueError):
            signal.pthread_sigmask(signal.SIG_UNBLOCK, [number])
        with contextlib.suppress(OSError):
            os.kill(os.getpid(), number)
        number = 128 + number  # a signal whose default action does not end a process
    os._exit(number)


def _read_note(fd: int) -> int | None:
    try:
        data = os.read(fd, 1)
    except OSError:
        return None
    return data[0] if data else None


def wait_and_relay(child: int, note_fd: int) -> NoReturn:
    """The waiter's whole life: wait for ``child`` (init) and end exactly as the plugin did.

    SIGTERM and SIGINT, whether sent to the group or to the waiter's pid alone, are passed on
    to init, which passes them on to the plugin's own process group (``forward_to_init``).
    """
    forward_to_init(child)
    while True:
        try:
            _, status = os.waitpid(child, 0)
            break
        except ChildProcessError:  # cannot happen (it is our only child); do not spin
            _die_like("exit", 70)
    kind, number = relay_plan(os.waitstatus_to_exitcode(status), _read_note(note_fd))
    _die_like(kind, number)


def _load_bare_fork() -> Callable[[], int] | None:
    try:  # PyDLL: called with the interpreter's lock held, as os.fork calls fork(2)
        function: Callable[[], int] = ctypes.PyDLL(None, use_errno=True).fork
    except (OSError, AttributeError):
        return None
    return function


_bare_fork = _load_bare_fork()


def fork_bare() -> int:
    """``fork(2)`` without the interpreter's at-fork work, when this process has one thread.

    ``os.fork`` runs the Python at-fork handlers (threading's, logging's, random's) in the child:
    they write ~0.7 MiB of inherited pages, which the kernel copies into init and again into
    the plugin (measured with bench/plugin_start.py). With a single thread there is nothing for
    them to repair (no lock held by a thread that is gone, the thread keeps its identity), and
    ``random`` needs no new seed: the runner got its own when it was started or forked, and
    neither helper draws from it. With other threads, or without a libc ``fork`` to call, this
    is ``os.fork``.
    """
    if _bare_fork is None or _thread._count() != 0:
        return os.fork()
    pid = _bare_fork()
    if pid < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"fork: {os.strerror(errno)}")
    return pid


def branch(close: Sequence[int] = ()) -> None:
    """Fork the waiter → init → plugin chain into the namespaces ``enter`` prepared; return
    only in the plugin.

    This process stays outside as the waiter (``wait_and_relay``); its child is init, pid 1
    inside (``init_loop``); init's child is the plugin, pid 2, which returns. Init dies with
    the waiter (death signal, armed before the lifeline is checked so that no window is left);
    the plugin needs no death signal: when init dies, the kernel kills the whole namespace.
    ``close``: descriptors the waiter and init close (the plugin keeps them).

    Init, not the waiter, forks the plugin: a plugin whose parent is outside the namespace is
    re-parented outside when the waiter is killed, and init's exit (the namespace's end) then
    waits until a reaper out there collects it (with the bot killed, 91 of 100 trees were
    still alive 1 s later in bench/supervisors.py).

    The helpers never return from here: every Python frame they leave, object they build or
    code they run writes inherited pages, which the kernel then copies for them (returning
    their role to the caller cost ~120 kB in each; bench/plugin_start.py, idle USS per
    process). For the same reason they fork with ``fork_bare`` and set their handlers with
    plain numbers; and a page both one of them and the plugin write is held three times.
    """
    note_r, note_w = os.pipe()
    life_r, life_w = os.pipe()
    # The collector never walks (and so never writes to) what the three share from here on.
    gc.freeze()
    init = fork_bare()
    if init:
        for fd in (note_w, life_r, *close):
            os.close(fd)
        # The lifeline's write end stays open, unused, until the waiter dies.
        wait_and_relay(init, note_r)
    os.close(note_r)
    os.close(life_w)
    arm_death_signal()
    if not parent_alive(life_r):
        os._exit(70)
    os.close(life_r)
    plugin = fork_bare()
    if plugin:
        for fd in close:
            os.close(fd)
        init_loop(plugin, note_w)
    os.close(note_w)
    # A session (and process group) of its own, as the runner had before: SIGTERM sent to
    # the runner's group reaches the waiter and init, and through them this group once.
    os.setsid()


#: How the waiter passes a stop signal on to init: init ignores SIGTERM/SIGINT themselves (it
#: gets the group's copy too), so each reaches the plugin exactly once.
RELAYED = {signal.SIGTERM: signal.SIGUSR1, signal.SIGINT: signal.SIGUSR2}

#: The same in plain numbers, both ways, and what init ignores: the helpers' handlers run no
#: enum code (``signal.signal``'s Python wrapper does, and each object touched is a page
#: copied); ``_signal`` is the C module behind ``signal``.
_TO_INIT = {int(original): int(relayed) for original, relayed in RELAYED.items()}
_TO_PLUGIN = {relayed: original for original, relayed in _TO_INIT.items()}
_IGNORED_BY_INIT = (int(signal.SIGTERM), int(signal.SIGINT), int(signal.SIGHUP))
_c_signal: Any = importlib.import_module("_signal")


def forward_to_init(init: int) -> None:
    """Waiter: pass SIGTERM/SIGINT on to init, as SIGUSR1/SIGUSR2."""

    def handler(signum: int, _frame: object) -> None:
        with contextlib.suppress(OSError):
            os.kill(init, _TO_INIT[signum])

    for signum in _TO_INIT:
        _c_signal.signal(signum, handler)


def forward_to_plugin(plugin: int) -> None:
    """Init: SIGUSR1/SIGUSR2 from the waiter become SIGTERM/SIGINT for the plugin's group (its
    pid while it has not made the group yet); SIGTERM/SIGINT/SIGHUP to init are ignored."""

    def handler(signum: int, _frame: object) -> None:
        original = _TO_PLUGIN[signum]
        with contextlib.suppress(OSError):
            try:
                os.killpg(plugin, original)
            except ProcessLookupError:
                os.kill(plugin, original)

    for signum in _IGNORED_BY_INIT:
        _c_signal.signal(signum, _c_signal.SIG_IGN)
    for signum in _TO_PLUGIN:
        _c_signal.signal(signum, handler)


def init_loop(plugin: int, note_fd: int) -> NoReturn:
    """pid 1's life: reap whatever is re-parented to it; end as the plugin ends.

    A plugin killed by a signal cannot be mirrored by pid 1 (it cannot die of a signal sent
    from inside its own namespace), so it tells the waiter on the note pipe, which does.
    When init exits, the kernel kills every process left in the namespace.
    """
    forward_to_plugin(plugin)
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            os._exit(70)
        if pid != plugin:
            continue  # an orphan of the plugin, reaped
        code = os.waitstatus_to_exitcode(status)
        if code < 0:
            with contextlib.suppress(OSError):
                os.write(note_fd, bytes([-code]))
            os._exit(0)
        os._exit(code)


def arm_death_signal() -> None:
    """Die with our parent (cleared by ``fork`` and by every change of credentials).

    Init runs this: plain ``try`` and a plain number (no context manager, no enum code)."""
    try:  # noqa: SIM105
        prctl.set_death_signal(_SIGKILL)
    except OSError:
        pass


_SIGKILL = int(signal.SIGKILL)


def parent_alive(lifeline_fd: int) -> bool:
    """False once the waiter is gone (its end of the lifeline closed); ``getppid`` is 0 here."""
    readable, _, _ = select.select([lifeline_fd], [], [], 0)
    return not readable  # the waiter never writes: readable is its end closed


# --- made ahead by the fork server ------------------------------------------------------


def premake(request: Request, bot: int) -> tuple[int, int] | None:
    """In the fork server's intermediate process: make the namespaces ``request`` asks for and,
    with a PID namespace, fork its init; the next ``fork`` of this process is the plugin.

    ``bot``: the pid init waits to be adopted by. Records what came of it in ``PREMADE``
    (inherited by the plugin). Returns init's pid and the write end of its go-ahead pipe: the
    caller closes it after forking the plugin (and the plugin closes its copy), and init,
    seeing end of file, knows pid 2 exists (or never will). None without a PID namespace.
    """
    global PREMADE
    if not _LIBC:  # not prepared by a fork server (``prepare``): now, then
        prepare()
    try:
        outcome = enter(request)
    except OSError as exc:
        PREMADE = Premade(request, Outcome(), error=str(exc))
        return None
    PREMADE = Premade(request, outcome)
    if not outcome.flags & CLONE_NEWPID:
        return None
    go_r, go_w = os.pipe()
    init = fork_bare()
    if init == 0:
        os.close(go_w)
        init_beside(go_r, bot)
    os.close(go_r)
    return init, go_w


def init_beside(go_fd: int, bot: int) -> NoReturn:
    """pid 1's life beside the plugin (``premake``): hold the namespace while the plugin lives.

    It runs no plugin code and is ended from outside only: by the bot once the plugin has
    ended (``rosey.sandbox.standby.reap_init``), or by its death signal when the bot dies;
    either way the kernel then kills everything left inside. First it closes every descriptor
    but the go-ahead pipe, ignores ``SIGCHLD`` (the kernel then reaps whatever is re-parented
    here as it ends, without waking us) and ``SIGTERM``/``SIGINT``/``SIGHUP`` (from inside,
    pid 1 ignores them anyway), waits until the plugin is forked and ``bot`` is its parent
    (the intermediate process is on its way out), arms its death signal and checks the parent
    again. Then it becomes ``sleep infinity`` (``prepare`` finds it): ignored signals and the
    death signal survive ``execve``, and init holds none of the fork server's memory (~0.1 MiB
    of its own instead of ~0.8, and next to nothing to unmap when it ends). Without that
    program it waits in Python. It stays in the fork server's process group, as a standby does.
    """
    try:
        os.closerange(3, go_fd)
        os.closerange(go_fd + 1, os.sysconf("SC_OPEN_MAX"))
        for signum in (*_IGNORED_BY_INIT, _SIGCHLD):
            _c_signal.signal(signum, _c_signal.SIG_IGN)
        os.read(go_fd, 1)  # end of file: the plugin is forked (or its fork failed)
        os.close(go_fd)
        if not await_adoption(bot):
            os._exit(0)  # the bot is gone already (or never adopted us): so is the namespace
        if _WAIT:
            os.execv(_WAIT[0], [_WAIT[0], "infinity"])
        while True:
            select.select([], [], [])
    except BaseException:  # nothing to report to, and ending is the answer
        pass
    os._exit(0)


#: The program init becomes (``init_beside``), found once by ``prepare``: empty if none.
_WAIT: list[str] = []
#: How often a process forked through the fork server's intermediate looks for its adoption.
_ADOPTION_POLL_S = 0.0001


def await_adoption(bot: int, timeout: float = 5.0) -> bool:
    """Wait until ``bot`` is our parent (the intermediate process that forked us is on its way
    out: microseconds, normally), then arm our death signal and look again: whether we are the
    bot's, armed. Armed while the intermediate is still the parent, the signal would fire when
    that one exits; a bot that died in between made someone else our parent. Also from inside
    a PID namespace (``outside_parent``)."""
    for _ in range(max(1, int(timeout / _ADOPTION_POLL_S))):
        if outside_parent() == bot:
            break
        select.select([], [], [], _ADOPTION_POLL_S)
    with contextlib.suppress(OSError):
        prctl.set_death_signal(_SIGKILL)
    return outside_parent() == bot


_SIGCHLD = int(signal.SIGCHLD)


def outside_pid() -> int:
    """This process's pid as the bot knows it (``/proc`` shows the pids of the host's
    namespace; ``os.getpid`` is 2 inside namespaces made ahead)."""
    return int(os.readlink("/proc/self"))


def outside_parent() -> int:
    """Our parent's pid as the bot knows it, also from inside a PID namespace (where
    ``os.getppid`` is 0 for a parent outside); 0 if ``/proc`` does not say."""
    parent = os.getppid()
    if parent:
        return parent
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"PPid:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0
