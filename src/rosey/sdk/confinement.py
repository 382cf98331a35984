"""The runner's confinement steps: what the plugin process does to itself after the bootstrap
and before any plugin code is imported (``rosey.sdk.runner`` calls ``harden`` first thing,
then ``confine_self``).

Order: die with the manager and stay undumpable (``harden``); its own PID and IPC namespaces
(it forks: this process stays outside as the waiter, see ``rosey.sandbox.namespaces``; a
plugin forked by the fork server finds them made already, and is the manager's child), the
plugin's own uid and its process rlimit; Landlock and dropped capabilities; the seccomp filter
last. The layers in force are reported in one ``confined`` message before any plugin code runs;
a layer the host refuses is reported as ``missing:<layer>``; one the plugin cannot run without
(Landlock refused, folders unreachable) is a ``failed`` message and exit 1.

The ``rosey.sandbox`` modules it uses are standard library only (ctypes), imported lazily:
a plugin that asks for none of the layers does not load them.
"""

from __future__ import annotations

import os
import resource
import signal
import sys
from pathlib import Path
from typing import Any

from rosey.protocol import control
from rosey.protocol.control import BootstrapMessage
from rosey.sandbox import prctl
from rosey.sdk import runtime
from rosey.sdk.control import ControlChannel

__all__ = ["confine_self", "harden"]


def harden(parent_pid: int) -> None:
    """Die with the manager, and keep other same-uid processes out of our memory."""
    if not prctl.available():  # not Linux: the warden still covers us
        print("rosey runner: prctl unavailable", file=sys.stderr)
    else:
        for option, value in ((prctl.PR_SET_PDEATHSIG, signal.SIGKILL), (prctl.PR_SET_DUMPABLE, 0)):
            try:
                prctl.prctl(option, value)
            except OSError as exc:
                print(f"rosey runner: {exc}", file=sys.stderr)
    # The manager may have died before PDEATHSIG was armed.
    if _parent() != parent_pid:
        os._exit(70)


def _parent() -> int:
    """Our parent's pid as the manager knows it (inside namespaces the fork server made,
    ``getppid`` is 0: the manager is outside)."""
    parent = os.getppid()
    if parent:
        return parent
    from rosey.sandbox import namespaces

    return namespaces.outside_parent()


def _premade() -> bool:
    """Whether the fork server forked us into namespaces it made (only then is the module
    loaded already: a plain runner that asks for none does not import it)."""
    module = sys.modules.get("rosey.sandbox.namespaces")
    return getattr(module, "PREMADE", None) is not None


def _isolate(
    control_channel: ControlChannel, control_fd: int, isolation: dict[str, Any], parent_pid: int
) -> list[str]:
    """Namespaces and the plugin's own uid, before any plugin code; the layer names.

    With a PID namespace this forks twice and returns only in the plugin process (pid 2
    inside); the waiter outside and init (pid 1) live on in ``rosey.sandbox.namespaces``.
    A process the fork server forked into namespaces it made ahead (``namespaces.PREMADE``) is
    pid 2 already, the manager's child itself: no fork, no waiter.
    A layer the host refuses is reported as ``missing:<layer>`` and the reason logged.
    """
    from rosey.sandbox import namespaces
    from rosey.sandbox.landlock import drop_capabilities

    outside_pid = os.getpid()
    request = namespaces.Request(
        pid=bool(isolation.get("pid_namespace")), ipc=bool(isolation.get("ipc_namespace"))
    )
    premade = namespaces.PREMADE
    try:
        if premade is None:
            outcome = namespaces.enter(request)
        elif premade.request != request:
            raise OSError(
                f"the fork server made the namespaces {premade.request}, "
                f"the bootstrap asks for {request}"
            )
        elif premade.error is not None:
            raise OSError(premade.error)
        else:
            outcome = premade.outcome
    except OSError as exc:
        control_channel.send_now(control.failed(f"cannot isolate the plugin: {exc}"))
        sys.exit(1)
    # Whether the manager is our parent (no waiter between): it may die while we change
    # credentials, which clears the death signal.
    managers_child = premade is not None or not outcome.flags & namespaces.CLONE_NEWPID
    layers = list(outcome.layers)
    for reason in outcome.missing:
        print(f"rosey runner: namespace unavailable, {reason}", file=sys.stderr)
        layers.append("missing:" + reason.partition(":")[0])
    if premade is not None and outcome.flags & namespaces.CLONE_NEWPID:
        runtime.MANAGER_PID = namespaces.outside_pid()
    elif outcome.flags & namespaces.CLONE_NEWPID:
        # Re-armed (a new user namespace may have cleared it) before the fork: this process
        # becomes the waiter, which then runs no more than it must (see ``branch``).
        harden(parent_pid)
        # Neither the waiter nor init runs plugin code or talks: they close the channel.
        namespaces.branch(close=(control_fd,))
        # The plugin, pid 2: the pid the manager knows (its status and health answers) is the
        # waiter's, which is how everything outside names this tree.
        runtime.MANAGER_PID = outside_pid
    if outcome.flags & namespaces.CLONE_NEWUSER:
        # Every capability inside its own user namespace: none of them is the plugin's.
        drop_capabilities()
        layers.append("no-capabilities")
    uid, gid = isolation.get("uid"), isolation.get("gid")
    if isinstance(uid, int) and isinstance(gid, int):
        # Supplementary groups: only that of its own environment, if it has one (spawnspec).
        os.setgroups([g for g in isolation.get("groups") or () if isinstance(g, int)])
        os.setgid(gid)
        os.setuid(uid)
        if managers_child:
            namespaces.arm_death_signal()  # a change of credentials clears it
        layers.append("uid")
    elif isolation.get("plugin_uids"):
        layers.append("missing:uid")
    if "uid" in layers or outcome.flags & namespaces.CLONE_NEWUSER:
        helpers = 0
        if outcome.flags & namespaces.CLONE_NEWUSER and outcome.flags & namespaces.CLONE_NEWPID:
            helpers = 1 if premade is not None else 2  # init (and the waiter), same uid
        layers += _limit_processes(isolation.get("max_processes"), helpers)
    # Without a waiter the manager is still our parent: it may have died before the death
    # signal was armed again. (Below a waiter, init's death takes us along.)
    if managers_child and _parent() != parent_pid:
        os._exit(70)
    return layers


def _limit_processes(max_processes: object, helpers: int) -> list[str]:
    """``RLIMIT_NPROC`` for the plugin's tree, where the kernel counts only that tree.

    The kernel counts it per uid, and since Linux 5.14 per user namespace: with a uid of its
    own, or in a user namespace of its own, the count is this plugin's processes (threads
    included, as cgroup ``pids.max`` counts them) and nobody else's. That is the process quota
    of an unprivileged bot on a host without a pids cgroup. Inside a user namespace init (and
    the waiter, if there is one: ``rosey.sandbox.namespaces``) count too: ``helpers``. Set after
    capabilities are gone, so it cannot be raised again.
    """
    if not isinstance(max_processes, int) or max_processes <= 0:
        return []
    try:
        resource.setrlimit(resource.RLIMIT_NPROC, (max_processes + helpers,) * 2)
    except (OSError, ValueError) as exc:
        print(f"rosey runner: cannot limit processes: {exc}", file=sys.stderr)
        return ["missing:rlimit-nproc"]
    return ["rlimit-nproc"]


def _unreachable(boot: BootstrapMessage) -> str | None:
    """Why this process (running as the plugin's own uid) cannot use its folders, or None."""
    wanted = [
        ("plugin folder", boot["plugin_dir"], os.R_OK | os.X_OK),
        ("data folder", boot["data_dir"], os.R_OK | os.W_OK | os.X_OK),
        *(("Python runtime", p, os.R_OK | os.X_OK) for p in sys.path if os.path.isdir(p)),
    ]
    for what, path, mode in wanted:
        if os.access(path, mode):
            continue
        blocker = next((a for a in reversed(Path(path).parents) if not os.access(a, os.X_OK)), None)
        where = f"{blocker} may not be entered by others" if blocker else "its permissions"
        return (
            f"its {what} {path} is not readable by the plugin's own uid {os.getuid()} "
            f"({where}); make it readable by others (chmod o+rx) or set "
            f"security.plugin_uids: false"
        )
    return None


def confine_self(
    control_channel: ControlChannel, control_fd: int, boot: BootstrapMessage, parent_pid: int
) -> None:
    """Put this process under every layer the bootstrap asks for, then report them.

    ``control_fd``: the channel's descriptor (closed in the namespace helpers).

    Order: namespaces and uid (may fork), Landlock and dropped capabilities, seccomp last,
    just before plugin code is imported. A layer that cannot be had is either fatal (Landlock
    refused, folders unreachable: a "failed" message) or reported as ``missing:<layer>``.
    """
    layers: list[str] = []
    isolation = boot.get("isolation")
    if isolation is None and _premade():
        control_channel.send_now(
            control.failed(
                "cannot isolate the plugin: the fork server made namespaces it did not ask for"
            )
        )
        sys.exit(1)
    if isolation is not None:
        layers += _isolate(control_channel, control_fd, isolation, parent_pid)
        if "uid" in layers and (problem := _unreachable(boot)) is not None:
            control_channel.send_now(control.failed(f"cannot start the plugin: {problem}"))
            sys.exit(1)
    sandbox = boot.get("sandbox")
    if sandbox is not None:
        # Before any plugin code: from here on the kernel holds this process to the rules.
        from rosey.sandbox.landlock import Rules, confine

        try:
            layers += confine(
                Rules(
                    read=tuple(sandbox["read"]),
                    write=tuple(sandbox["write"]),
                    connect_ports=None
                    if sandbox.get("network")
                    else tuple(sandbox["connect_ports"]),
                )
            )
        except OSError as exc:
            control_channel.send_now(control.failed(f"cannot confine the plugin: {exc}"))
            sys.exit(1)
    filtering = boot.get("seccomp")
    if filtering is not None:
        from rosey.sandbox import seccomp

        try:
            layers += seccomp.install(network=bool(filtering.get("network")))
        except OSError as exc:
            print(f"rosey runner: seccomp unavailable: {exc}", file=sys.stderr)
            layers.append("missing:seccomp")
    if isolation is not None or sandbox is not None or filtering is not None:
        control_channel.send_now(control.confined(layers))
