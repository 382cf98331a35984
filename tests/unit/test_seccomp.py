"""The seccomp filter's decisions, checked by running its BPF program on a small interpreter.

Pure: nothing is installed here (``tests/integration/test_seccomp_filter.py`` does that in a
child process). The interpreter knows the few classic-BPF instructions the compiler emits and
fails on any other, so a compiler change that emits something unexpected is caught too.
"""

from __future__ import annotations

import errno
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rosey.sandbox import seccomp
from rosey.sandbox.seccomp import ARCHES, RET_ALLOW, RET_ERRNO, RET_KILL_PROCESS, Arch

ALLOW = RET_ALLOW
EPERM = RET_ERRNO | errno.EPERM
ENOSYS = RET_ERRNO | errno.ENOSYS
AF_UNIX, AF_INET, AF_INET6, AF_NETLINK = 1, 2, 10, 16
SOCK_STREAM, SOCK_DGRAM, SOCK_NONBLOCK_CLOEXEC = 1, 2, 0o4000 | 0o2000000
CLONE_NEWPID, CLONE_NEWUSER, SIGCHLD, CLONE_THREAD_FLAGS = 0x20000000, 0x10000000, 17, 0x3D0F00


def run(program: list[seccomp.Insn], nr: int, arch: int, args: tuple[int, ...] = ()) -> int:
    """Run ``program`` on one ``seccomp_data``; its return value."""
    full = (*args, *(0,) * (6 - len(args)))
    data = struct.pack("<iIQ6Q", nr, arch, 0, *full)
    acc, pc = 0, 0
    for _ in range(len(program) + 1):
        code, jt, jf, k = program[pc]
        if code == 0x20:
            (acc,) = struct.unpack_from("<I", data, k)
            pc += 1
        elif code == 0x54:
            acc &= k
            pc += 1
        elif code in (0x15, 0x35, 0x45):
            taken = {0x15: acc == k, 0x35: acc >= k, 0x45: bool(acc & k)}[code]
            pc += 1 + (jt if taken else jf)
        elif code == 0x06:
            return k
        else:
            raise AssertionError(f"unexpected instruction {code:#x}")
    raise AssertionError("program ran off its end")


def decide(name: str, *args: int, network: bool = False, arch: Arch = ARCHES["x86_64"]) -> int:
    program = seccomp.compile_filter(arch, seccomp.policy(network=network))
    return run(program, arch.numbers[name], arch.audit, args)


@pytest.mark.parametrize("arch", ARCHES.values(), ids=list(ARCHES))
@pytest.mark.parametrize(
    ("call", "args", "network", "expected"),
    [
        # prlimit64(pid, ...): itself only. The bot's pid, a sibling's, a 64-bit trick: refused.
        ("prlimit64", (0, 0, 1), False, ALLOW),
        ("prlimit64", (1234, 0, 1), False, EPERM),
        ("prlimit64", (1 << 32, 0, 1), False, EPERM),
        ("setpriority", (0, 0, 10), False, ALLOW),
        ("setpriority", (0, 4321, 10), False, EPERM),
        ("sched_setaffinity", (0, 8, 0), False, ALLOW),
        ("sched_setaffinity", (99, 8, 0), False, EPERM),
        ("ioprio_set", (1, 77, 0), False, EPERM),
        # Side channels.
        ("add_key", (), False, EPERM),
        ("keyctl", (), False, EPERM),
        ("msgget", (0, 0o1600), False, EPERM),
        ("shmget", (), False, EPERM),
        ("semget", (), False, EPERM),
        # Sockets: TCP over IPv4/IPv6 only, whatever the flags; everything with `network`.
        ("socket", (AF_INET, SOCK_STREAM | SOCK_NONBLOCK_CLOEXEC, 0), False, ALLOW),
        ("socket", (AF_INET6, SOCK_STREAM, 0), False, ALLOW),
        ("socket", (AF_INET, SOCK_DGRAM, 0), False, EPERM),
        ("socket", (AF_UNIX, SOCK_STREAM, 0), False, EPERM),
        ("socket", (AF_NETLINK, SOCK_DGRAM, 0), False, EPERM),
        ("socket", (AF_INET, SOCK_DGRAM, 0), True, ALLOW),
        ("socket", (AF_UNIX, SOCK_STREAM, 0), True, ALLOW),
        ("socketpair", (AF_UNIX, SOCK_STREAM, 0), False, ALLOW),
        # Processes and namespaces.
        ("ptrace", (16, 1), False, EPERM),
        ("process_vm_readv", (), False, EPERM),
        ("io_uring_setup", (), False, EPERM),
        ("unshare", (CLONE_NEWUSER,), False, EPERM),
        ("clone", (SIGCHLD,), False, ALLOW),
        ("clone", (CLONE_THREAD_FLAGS,), False, ALLOW),
        ("clone", (CLONE_NEWPID | SIGCHLD,), False, EPERM),
        ("clone", (CLONE_NEWUSER | SIGCHLD,), True, EPERM),
        ("clone3", (), False, ENOSYS),
        ("mount", (), True, EPERM),
        ("init_module", (), False, EPERM),
    ],
)
def test_decisions(
    arch: Arch, call: str, args: tuple[int, ...], network: bool, expected: int
) -> None:
    assert decide(call, *args, network=network, arch=arch) == expected


@pytest.mark.parametrize("arch", ARCHES.values(), ids=list(ARCHES))
def test_a_call_of_another_abi_kills_the_process(arch: Arch) -> None:
    program = seccomp.compile_filter(arch, seccomp.POLICY)
    assert run(program, 0, 0x4000_0003) == RET_KILL_PROCESS  # AUDIT_ARCH_I386


def test_x32_calls_are_refused_on_x86_64() -> None:
    arch = ARCHES["x86_64"]
    program = seccomp.compile_filter(arch, seccomp.POLICY)
    assert run(program, 0x4000_0000 | 41, arch.audit, (AF_UNIX, SOCK_STREAM)) == ENOSYS


@given(st.integers(min_value=0, max_value=460), st.lists(st.integers(0, 2**64 - 1), max_size=6))
def test_calls_outside_the_policy_are_allowed(nr: int, args: list[int]) -> None:
    """Everything not named by a rule passes untouched (the filter never breaks ordinary work)."""
    arch = ARCHES["x86_64"]
    named = {arch.numbers[rule.syscall] for rule in seccomp.POLICY}
    if nr in named:
        return
    program = seccomp.compile_filter(arch, seccomp.POLICY)
    assert run(program, nr, arch.audit, tuple(args)) == ALLOW


def test_every_rule_names_a_known_syscall_on_every_arch() -> None:
    for arch in ARCHES.values():
        assert {rule.syscall for rule in seccomp.POLICY} <= set(arch.numbers)
        assert len(set(arch.numbers.values())) == len(arch.numbers)


@pytest.mark.skipif(seccomp.current_arch() is None, reason="no seccomp table for this ABI")
def test_the_filters_prepared_ahead_are_the_ones_compiled_on_the_spot() -> None:
    """The fork server compiles both filters once (``prepare``); a forked plugin installs
    those bytes, which must be exactly what ``install`` would have compiled itself."""
    arch = seccomp.current_arch()
    assert arch is not None
    saved = dict(seccomp._compiled)
    try:
        seccomp._compiled.clear()
        seccomp.prepare()
        for network in (False, True):
            program = seccomp.compile_filter(arch, seccomp.policy(network=network))
            raw = b"".join(struct.pack("=HBBI", *insn) for insn in program)
            assert seccomp._compiled[network] == (len(program), raw)
        assert seccomp._compiled[False] != seccomp._compiled[True]  # the grant shows
    finally:
        seccomp._compiled.clear()
        seccomp._compiled.update(saved)
