"""The second kernel layer: a seccomp filter for the calls Landlock cannot see.

Landlock (``rosey.sandbox.landlock``) governs files, TCP ports, signals and abstract unix
sockets. It does not cover ``prlimit64`` on another process (a same-uid caller may set
RLIMIT_CPU=1 on the bot and kill it), the uid's keyrings, SysV IPC, UDP or pathname unix
sockets, nor the calls that would let a plugin build itself new namespaces or inspect other
processes. The runner installs this filter on itself as the last step before plugin code is
imported; the kernel then applies it to the plugin and everything it forks, and nothing in the
process can lift it (``no_new_privs`` is set first, which is what lets an unprivileged process
install a filter at all).

The rules (``POLICY``), each refused with ``EPERM`` unless said otherwise:

- ``prlimit64`` on any pid but 0 (itself); ``setpriority``/``ioprio_set``/``sched_set*`` on any
  pid but 0: a plugin may tune itself, never anyone else;
- keyrings (``add_key``, ``request_key``, ``keyctl``) and SysV IPC (``msg*``, ``sem*``,
  ``shm*``): side channels between plugins that bypass the broker;
- ``socket`` other than TCP over IPv4/IPv6, unless the plugin has the ``network`` grant
  (``socketpair`` stays allowed: asyncio's self-pipe uses it, and it reaches nobody);
- reaching into other processes or the kernel: ``ptrace``, ``process_vm_*``, ``kcmp``,
  ``pidfd_getfd``, ``perf_event_open``, ``bpf``, ``userfaultfd``, ``io_uring_*`` (its
  operations would bypass this filter);
- new namespaces and mounts: ``unshare``, ``setns``, ``clone`` with a ``CLONE_NEW*`` flag,
  ``mount`` and the new mount API, ``pivot_root``, ``chroot``; ``clone3`` answers ``ENOSYS``
  (its flags sit in memory a filter cannot read), so the C library falls back to ``clone``;
- what dropped capabilities already refuse, refused once more: module loading, ``kexec``,
  ``reboot``, ``swapon``, ``acct``, ``syslog``, ``quotactl``, ``*_by_handle_at``.

A call from another ABI (x32, 32-bit compat) is refused: its numbers would mean other calls.
Pure parts (``POLICY``, ``compile_filter``) are table-tested with a small BPF interpreter;
``install`` is the thin ctypes shell. Standard library only: this runs in the plugin process.
"""

from __future__ import annotations

import ctypes
import errno
import platform
import struct
from dataclasses import dataclass

__all__ = ["ARCHES", "POLICY", "Arch", "Rule", "compile_filter", "install", "prepare"]

# Classic BPF, as seccomp takes it (linux/filter.h, linux/seccomp.h).
_LD_W_ABS = 0x20
_ALU_AND_K = 0x54
_JEQ_K = 0x15
_JGE_K = 0x35
_JSET_K = 0x45
_RET_K = 0x06
RET_ALLOW = 0x7FFF_0000
RET_ERRNO = 0x0005_0000
RET_KILL_PROCESS = 0x8000_0000
_OFF_NR, _OFF_ARCH, _OFF_ARGS = 0, 4, 16
_X32_SYSCALL_BIT = 0x4000_0000
_MAX_INSNS = 4096

_PR_SET_NO_NEW_PRIVS = 38
_SECCOMP_SET_MODE_FILTER = 1
_SECCOMP_FILTER_FLAG_TSYNC = 1

_AF_INET, _AF_INET6, _SOCK_STREAM, _SOCK_TYPE_MASK = 2, 10, 1, 0xF
#: CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET (NEWTIME is also 0x80).
_CLONE_NEW_ANY = (
    (0x0002_0000 | 0x0200_0000 | 0x0400_0000 | 0x0800_0000 | 0x1000_0000 | 0x2000_0000)
    | 0x4000_0000
    | 0x80
)


@dataclass(frozen=True)
class Arch:
    """One kernel ABI: its audit token and its syscall numbers."""

    name: str
    audit: int
    numbers: dict[str, int]
    seccomp_nr: int
    #: x86_64 also accepts x32 calls (numbers with bit 30 set) on the same audit token.
    x32_bit: bool = False


#: Syscall numbers (x86_64, aarch64), from <asm/unistd_64.h> and <asm-generic/unistd.h>.
_NUMBERS: dict[str, tuple[int, int]] = {
    "socket": (41, 198),
    "socketpair": (53, 199),
    "clone": (56, 220),
    "clone3": (435, 435),
    "unshare": (272, 97),
    "setns": (308, 268),
    "ptrace": (101, 117),
    "setpriority": (141, 140),
    "sched_setparam": (142, 118),
    "sched_setscheduler": (144, 119),
    "sched_setaffinity": (203, 122),
    "sched_setattr": (314, 274),
    "add_key": (248, 217),
    "request_key": (249, 218),
    "keyctl": (250, 219),
    "ioprio_set": (251, 30),
    "migrate_pages": (256, 238),
    "move_pages": (279, 239),
    "process_vm_readv": (310, 270),
    "process_vm_writev": (311, 271),
    "kcmp": (312, 272),
    "bpf": (321, 280),
    "userfaultfd": (323, 282),
    "perf_event_open": (298, 241),
    "prlimit64": (302, 261),
    "mount": (165, 40),
    "umount2": (166, 39),
    "pivot_root": (155, 41),
    "chroot": (161, 51),
    "io_uring_setup": (425, 425),
    "io_uring_enter": (426, 426),
    "io_uring_register": (427, 427),
    "open_tree": (428, 428),
    "move_mount": (429, 429),
    "fsopen": (430, 430),
    "fsconfig": (431, 431),
    "fsmount": (432, 432),
    "fspick": (433, 433),
    "mount_setattr": (442, 442),
    "pidfd_getfd": (438, 438),
    "kexec_load": (246, 104),
    "kexec_file_load": (320, 294),
    "init_module": (175, 105),
    "finit_module": (313, 273),
    "delete_module": (176, 106),
    "reboot": (169, 142),
    "swapon": (167, 224),
    "swapoff": (168, 225),
    "acct": (163, 89),
    "syslog": (103, 116),
    "name_to_handle_at": (303, 264),
    "open_by_handle_at": (304, 265),
    "quotactl": (179, 60),
    "lookup_dcookie": (212, 18),
    "msgget": (68, 186),
    "msgsnd": (69, 189),
    "msgrcv": (70, 188),
    "msgctl": (71, 187),
    "semget": (64, 190),
    "semop": (65, 193),
    "semctl": (66, 191),
    "semtimedop": (220, 192),
    "shmget": (29, 194),
    "shmat": (30, 196),
    "shmctl": (31, 195),
    "shmdt": (67, 197),
}

ARCHES: dict[str, Arch] = {
    "x86_64": Arch("x86_64", 0xC000_003E, {k: v[0] for k, v in _NUMBERS.items()}, 317, True),
    "aarch64": Arch("aarch64", 0xC000_00B7, {k: v[1] for k, v in _NUMBERS.items()}, 277),
}


@dataclass(frozen=True)
class Rule:
    """What happens to one syscall.

    ``deny``: always refused with ``errno``. Otherwise the call is allowed only when its
    argument ``arg`` is 0 (``arg_zero``), has none of the ``arg_none_of`` bits, or (``socket``)
    names TCP over IPv4/IPv6.
    """

    syscall: str
    errno: int = errno.EPERM
    arg: int = 0
    arg_zero: bool = False
    arg_none_of: int = 0
    tcp_only: bool = False

    @property
    def deny(self) -> bool:
        return not (self.arg_zero or self.arg_none_of or self.tcp_only)


def _denied(names: str) -> tuple[Rule, ...]:
    return tuple(Rule(name) for name in names.split())


#: The rules for a plugin without the ``network`` grant; ``policy(network=True)`` drops the
#: socket rule.
POLICY: tuple[Rule, ...] = (
    # Only itself: the calls that take a pid (0 = the caller).
    Rule("prlimit64", arg=0, arg_zero=True),
    Rule("setpriority", arg=1, arg_zero=True),
    Rule("ioprio_set", arg=1, arg_zero=True),
    Rule("sched_setparam", arg=0, arg_zero=True),
    Rule("sched_setscheduler", arg=0, arg_zero=True),
    Rule("sched_setaffinity", arg=0, arg_zero=True),
    Rule("sched_setattr", arg=0, arg_zero=True),
    Rule("migrate_pages", arg=0, arg_zero=True),
    Rule("move_pages", arg=0, arg_zero=True),
    # Side channels past the broker.
    *_denied("add_key request_key keyctl"),
    *_denied("msgget msgsnd msgrcv msgctl semget semop semctl semtimedop shmget shmat shmctl"),
    *_denied("shmdt"),
    Rule("socket", tcp_only=True),
    # Reaching into other processes or the kernel.
    *_denied("ptrace process_vm_readv process_vm_writev kcmp pidfd_getfd perf_event_open bpf"),
    *_denied("userfaultfd io_uring_setup io_uring_enter io_uring_register"),
    # New namespaces and mounts.
    *_denied("unshare setns mount umount2 pivot_root chroot"),
    *_denied("open_tree move_mount fsopen fsconfig fsmount fspick mount_setattr"),
    Rule("clone", arg=0, arg_none_of=_CLONE_NEW_ANY),
    Rule("clone3", errno=errno.ENOSYS),
    # Already refused by dropped capabilities; refused again, for hosts that keep some.
    *_denied("kexec_load kexec_file_load init_module finit_module delete_module reboot"),
    *_denied("swapon swapoff acct syslog quotactl lookup_dcookie"),
    *_denied("name_to_handle_at open_by_handle_at"),
)


def policy(*, network: bool) -> tuple[Rule, ...]:
    """The rules for a plugin; ``network`` (the grant) leaves socket families open."""
    return tuple(r for r in POLICY if not (network and r.syscall == "socket"))


def _insn(code: int, k: int, jt: int = 0, jf: int = 0) -> tuple[int, int, int, int]:
    return (code, jt, jf, k)


Insn = tuple[int, int, int, int]


def _arg_lo(index: int) -> int:
    return _OFF_ARGS + 8 * index  # little-endian: the low word first


def _block(rule: Rule) -> list[Insn]:
    """The instructions after "nr == rule's syscall": every path ends in a return."""
    refuse = RET_ERRNO | rule.errno
    if rule.deny:
        return [_insn(_RET_K, refuse)]
    if rule.arg_zero:  # both 32-bit halves of a 64-bit argument must be 0
        return [
            _insn(_LD_W_ABS, _arg_lo(rule.arg) + 4),
            _insn(_JEQ_K, 0, jt=0, jf=3),
            _insn(_LD_W_ABS, _arg_lo(rule.arg)),
            _insn(_JEQ_K, 0, jt=0, jf=1),
            _insn(_RET_K, RET_ALLOW),
            _insn(_RET_K, refuse),
        ]
    if rule.arg_none_of:  # flags are an int: the low word holds them
        return [
            _insn(_LD_W_ABS, _arg_lo(rule.arg)),
            _insn(_JSET_K, rule.arg_none_of, jt=1, jf=0),
            _insn(_RET_K, RET_ALLOW),
            _insn(_RET_K, refuse),
        ]
    # tcp_only: socket(domain, type, protocol): domain AF_INET/AF_INET6, type SOCK_STREAM
    # (the low bits; SOCK_NONBLOCK and SOCK_CLOEXEC ride above the mask).
    return [
        _insn(_LD_W_ABS, _arg_lo(0)),
        _insn(_JEQ_K, _AF_INET, jt=1, jf=0),
        _insn(_JEQ_K, _AF_INET6, jt=0, jf=4),
        _insn(_LD_W_ABS, _arg_lo(1)),
        _insn(_ALU_AND_K, _SOCK_TYPE_MASK),
        _insn(_JEQ_K, _SOCK_STREAM, jt=0, jf=1),
        _insn(_RET_K, RET_ALLOW),
        _insn(_RET_K, refuse),
    ]


def compile_filter(arch: Arch, rules: tuple[Rule, ...]) -> list[Insn]:
    """The BPF program for ``rules`` on ``arch`` as ``(code, jt, jf, k)`` instructions."""
    program: list[Insn] = [
        _insn(_LD_W_ABS, _OFF_ARCH),
        _insn(_JEQ_K, arch.audit, jt=1, jf=0),
        _insn(_RET_K, RET_KILL_PROCESS),
        _insn(_LD_W_ABS, _OFF_NR),
    ]
    if arch.x32_bit:
        program += [
            _insn(_JGE_K, _X32_SYSCALL_BIT, jt=0, jf=1),
            _insn(_RET_K, RET_ERRNO | errno.ENOSYS),
        ]
    for rule in rules:
        block = _block(rule)
        # After a block the accumulator holds an argument, not the number: every block returns.
        program.append(_insn(_JEQ_K, arch.numbers[rule.syscall], jt=0, jf=len(block)))
        program += block
    program.append(_insn(_RET_K, RET_ALLOW))
    if len(program) > _MAX_INSNS:
        raise ValueError(f"seccomp filter too long: {len(program)} instructions")
    return program


class _SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))


def current_arch() -> Arch | None:
    """The ABI of this process, or None where no table exists (the layer is then missing)."""
    return ARCHES.get(platform.machine())


#: The compiled filters of this process's ABI, by ``network`` grant: (instructions, bytes).
#: Filled by ``prepare`` (the fork server, once: a forked plugin then only installs it).
_compiled: dict[bool, tuple[int, bytes]] = {}


def _program(arch: Arch, network: bool) -> tuple[int, bytes]:
    """The filter for ``arch`` as the kernel takes it: instruction count and packed bytes."""
    program = compile_filter(arch, policy(network=network))
    return len(program), b"".join(struct.pack("=HBBI", *insn) for insn in program)


#: The C library with ``prctl`` and ``syscall`` looked up, once per process (``_libc``).
_LIBC: list[ctypes.CDLL] = []


def _libc() -> ctypes.CDLL:
    if not _LIBC:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
        libc.prctl.restype = ctypes.c_int
        _LIBC.append(libc)
    return _LIBC[0]


def prepare() -> None:
    """Compile both filters now (with and without the ``network`` grant), and load the C
    library: ``install`` in a process forked after this only hands the bytes to the kernel."""
    arch = current_arch()
    if arch is not None:
        for network in (False, True):
            _compiled[network] = _program(arch, network)
    _libc()


def install(*, network: bool) -> list[str]:
    """Install the filter on the calling process and all its threads; the layer names.

    Raises ``OSError`` when the host cannot (no seccomp, or an ABI without a table); the runner
    reports that as a missing layer rather than starting the plugin unconfined silently.
    """
    arch = current_arch()
    if arch is None:
        raise OSError(errno.ENOSYS, f"no seccomp table for {platform.machine()}")
    count, raw = _compiled.get(network) or _program(arch, network)
    buffer = ctypes.create_string_buffer(raw, len(raw))
    prog = _SockFprog(count, ctypes.cast(buffer, ctypes.c_void_p))
    libc = _libc()
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_NO_NEW_PRIVS): {errno.errorcode.get(err, err)}")
    done = libc.syscall(
        ctypes.c_long(arch.seccomp_nr),
        ctypes.c_long(_SECCOMP_SET_MODE_FILTER),
        ctypes.c_long(_SECCOMP_FILTER_FLAG_TSYNC),
        ctypes.byref(prog),
    )
    if done != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"seccomp(SET_MODE_FILTER): {errno.errorcode.get(err, err)}")
    return ["seccomp" if not network else "seccomp-network"]
