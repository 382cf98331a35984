"""The kernel layer: Landlock (and dropped capabilities), applied by the runner to itself.

The runner calls ``confine`` after it received its bootstrap and BEFORE it imports any plugin
code; from then on the kernel holds the process (and everything it forks) to the rules, and no
code in the process can lift them. Rules:

- read (and execute): the Python runtime, the rosey package, the plugin's own folder, a few
  system files (shared libraries, time zone, TLS roots);
- write: only the plugin's data folder (and ``/dev/null``);
- TCP: connect only to the broker's port, bind nothing — unless the plugin has ``network``;
- signals and abstract unix sockets: only within its own sandbox (kernel ABI 6+).

Running as root, the process also drops every capability, so uid 0 inside a plugin cannot
override file permissions, load modules or trace other processes.

Standard library only (ctypes): this runs in the plugin process before the SDK is imported.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass

_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH, _RULE_NET_PORT = 1, 2
_PR_SET_NO_NEW_PRIVS, _PR_CAPBSET_DROP, _PR_CAP_AMBIENT = 38, 24, 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4

# Filesystem rights, by the ABI that introduced them.
_EXECUTE, _WRITE_FILE, _READ_FILE, _READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_FS_ABI1 = (1 << 13) - 1
_REFER, _TRUNCATE, _IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
_READ = _EXECUTE | _READ_FILE | _READ_DIR
_FILE_ONLY = _EXECUTE | _WRITE_FILE | _READ_FILE | _TRUNCATE | _IOCTL_DEV
_BIND_TCP, _CONNECT_TCP = 1 << 0, 1 << 1
_SCOPE_ABSTRACT_UNIX, _SCOPE_SIGNAL = 1 << 0, 1 << 1

#: System paths a Python process needs to read (missing ones are skipped).
SYSTEM_READ = (
    "/usr",
    "/lib",
    "/lib64",
    "/bin",
    "/etc/ld.so.cache",
    "/etc/localtime",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/hosts",
    "/etc/resolv.conf",
    "/etc/nsswitch.conf",
    "/etc/passwd",
    "/etc/group",
    "/dev/urandom",
    "/dev/random",
)


class _RulesetAttr(ctypes.Structure):
    _fields_ = (
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    )


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = (("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32))


class _NetPortAttr(ctypes.Structure):
    _fields_ = (("allowed_access", ctypes.c_uint64), ("port", ctypes.c_uint64))


@dataclass(frozen=True)
class Rules:
    """What one plugin may touch (the manager sends these in the bootstrap)."""

    read: tuple[str, ...]
    write: tuple[str, ...]
    #: TCP ports it may connect to; None leaves the network alone (the ``network`` grant).
    connect_ports: tuple[int, ...] | None


_LIBC: list[ctypes.CDLL] = []


def _libc() -> ctypes.CDLL:
    """The C library, loaded once per process (its functions are looked up once too): the fork
    server loads it (``prepare``), so a forked plugin starts with it."""
    if not _LIBC:
        _LIBC.append(ctypes.CDLL(None, use_errno=True))
    return _LIBC[0]


def prepare() -> None:
    """Load the C library and look up what ``confine`` calls (the fork server, once)."""
    libc = _libc()
    for function in (libc.prctl, libc.syscall):
        function.restype = ctypes.c_int


class _CapHeader(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class _CapData(ctypes.Structure):
    _fields_ = (
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    )


def abi_version() -> int:
    """The kernel's Landlock ABI, 0 when Landlock is unavailable or disabled."""
    try:
        version = _libc().syscall(
            _SYS_CREATE_RULESET, None, ctypes.c_size_t(0), _CREATE_RULESET_VERSION
        )
    except (OSError, AttributeError):
        return 0
    return max(0, int(version))


def runtime_read_paths() -> tuple[str, ...]:
    """The interpreter, its standard library and site-packages, and the rosey package."""
    import rosey

    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(rosey.__file__ or "")}
    paths.update(p for p in sys.path if p and os.path.isdir(p))
    return tuple(sorted(p for p in paths if p))


def _fs_rights(abi: int) -> int:
    rights = _FS_ABI1
    if abi >= 2:
        rights |= _REFER
    if abi >= 3:
        rights |= _TRUNCATE
    if abi >= 5:
        rights |= _IOCTL_DEV
    return rights


def _check(result: int, what: str) -> int:
    if result < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"landlock {what}: {os.strerror(errno)}")
    return result


def _add_path(libc: ctypes.CDLL, ruleset: int, path: str, access: int) -> None:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return  # a path this host does not have
    try:
        if not os.path.isdir(path):
            access &= _FILE_ONLY
        attr = _PathBeneathAttr(access, fd)
        _check(
            libc.syscall(_SYS_ADD_RULE, ruleset, _RULE_PATH_BENEATH, ctypes.byref(attr), 0),
            f"rule {path}",
        )
    finally:
        os.close(fd)


def drop_capabilities() -> None:
    """Drop every capability (bounding, ambient, effective/permitted/inheritable)."""
    libc = _libc()
    for cap in range(64):
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) < 0:
            break  # past the last capability this kernel knows
    libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    header = _CapHeader(0x20080522, 0)
    data = (_CapData * 2)()
    _check(libc.syscall(126, ctypes.byref(header), ctypes.byref(data)), "capset")  # SYS_capset


def confine(rules: Rules, extra_read: Iterable[str] = ()) -> list[str]:
    """Apply the rules to this process; the layers now in force (e.g. ``landlock-abi7``)."""
    libc = _libc()
    layers: list[str] = []
    _check(libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    if os.geteuid() == 0:
        drop_capabilities()
        layers.append("no-capabilities")
    abi = abi_version()
    if abi < 1:
        return layers
    fs = _fs_rights(abi)
    attr = _RulesetAttr(fs, 0, 0)
    if abi >= 4 and rules.connect_ports is not None:
        attr.handled_access_net = _BIND_TCP | _CONNECT_TCP
    if abi >= 6:
        attr.scoped = _SCOPE_SIGNAL | _SCOPE_ABSTRACT_UNIX
    size = ctypes.sizeof(_RulesetAttr) if abi >= 6 else (16 if abi >= 4 else 8)
    ruleset = _check(
        libc.syscall(_SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), 0), "ruleset"
    )
    try:
        for path in (*SYSTEM_READ, *runtime_read_paths(), *rules.read, *extra_read):
            _add_path(libc, ruleset, path, _READ)
        _add_path(
            libc, ruleset, "/dev/null", _READ_FILE | _WRITE_FILE | (_TRUNCATE if abi >= 3 else 0)
        )
        for path in rules.write:
            _add_path(libc, ruleset, path, fs)
        if attr.handled_access_net:
            for port in rules.connect_ports or ():
                net = _NetPortAttr(_CONNECT_TCP, port)
                _check(
                    libc.syscall(_SYS_ADD_RULE, ruleset, _RULE_NET_PORT, ctypes.byref(net), 0),
                    "port",
                )
        _check(libc.syscall(_SYS_RESTRICT_SELF, ruleset, 0), "restrict_self")
    finally:
        os.close(ruleset)
    layers.append(f"landlock-abi{abi}")
    if attr.handled_access_net:
        layers.append("landlock-net")
    if attr.scoped:
        layers.append("landlock-signals")
    return layers
