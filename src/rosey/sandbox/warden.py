"""The warden: ``python -I -m rosey.sandbox.warden BOT_PID``, the bot's undertaker.

``PR_SET_PDEATHSIG`` kills a plugin process when the bot dies, but not what the plugin forked
(the setting is cleared in a forked child), and a SIGKILLed bot runs no cleanup. The warden is
one small process the bot starts first, holding no plugin code, that learns over a pipe (its
stdin) what the bot started, one line each:

    cgroup PATH     a cgroup folder of the bot: everything in it and below belongs to plugins
    group PGID      a plugin's process group            ungroup PGID   it is gone
    pid PID         another child (the nats-server)     unpid PID      it is gone
    mount PATH      a data folder's quota mount         unmount PATH   the bot unmounted it
    bye             the bot stopped cleanly: exit without touching anything

When the bot dies the pipe reaches end of file (and, as a backup, the kernel sends the warden
SIGUSR1 through its own ``PR_SET_PDEATHSIG``): the warden kills every process in the cgroups,
every process group and every pid it was told about, removes the cgroups, unmounts the
data-folder mounts (lazily: a process that was just killed may still hold a file; the kernel
frees the loop device when the last one goes; several at once, ``mounts.unmount_all``: 100
take ~60 ms instead of ~150), and exits.

It runs in a session of its own, so Ctrl-C in the bot's terminal (SIGINT to the foreground
process group) does not reach it, and it ignores SIGINT and SIGHUP anyway; SIGTERM makes it do
its job at once. It prints ``ready`` on stdout once armed. Imports are kept to ``os``,
``signal``, ``sys`` and ``ctypes`` (``rosey.sandbox.prctl``): it must start within milliseconds.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from types import FrameType

from rosey.sandbox import reaper


def parse_command(line: str) -> tuple[str, str]:
    """``"group 42"`` → ``("group", "42")``; unknown or empty lines → ``("", line)``."""
    verb, _, arg = line.strip().partition(" ")
    if verb in ("cgroup", "group", "ungroup", "pid", "unpid", "mount", "unmount", "bye"):
        return verb, arg
    return "", line


class Warden:
    """What the bot told us about, and the sweep that ends all of it."""

    def __init__(self, bot_pid: int) -> None:
        self.bot_pid = bot_pid
        self.cgroups: list[str] = []
        self.groups: dict[int, int | None] = {}  # pgid → leader start time
        self.pids: dict[int, int | None] = {}  # pid → start time
        self.mounts: list[str] = []
        self.swept = False

    def handle(self, line: str) -> bool:
        """Apply one line; False once the bot said ``bye``."""
        verb, arg = parse_command(line)
        try:
            if verb == "cgroup" and arg and arg not in self.cgroups:
                self.cgroups.append(arg)
            elif verb == "group":
                self.groups[int(arg)] = reaper.start_time(int(arg))
            elif verb == "ungroup":
                self.groups.pop(int(arg), None)
            elif verb == "pid":
                self.pids[int(arg)] = reaper.start_time(int(arg))
            elif verb == "unpid":
                self.pids.pop(int(arg), None)
            elif verb == "mount" and arg and arg not in self.mounts:
                self.mounts.append(arg)
            elif verb == "unmount" and arg in self.mounts:
                self.mounts.remove(arg)
            elif verb == "bye":
                return False
        except ValueError:
            _say(f"ignoring a malformed line: {line.strip()[:80]!r}")
        return True

    def sweep(self, why: str) -> None:
        """Kill everything we know of, remove the cgroups. Idempotent."""
        if self.swept:
            return
        self.swept = True
        killed = 0
        for path in self.cgroups:
            killed += reaper.kill_cgroup(path, timeout=5.0)
        for pgid, started in self.groups.items():
            # The leader may be gone (its children keep the group): only skip a reused pid.
            leader = reaper.start_time(pgid)
            if leader is not None and started is not None and leader != started:
                continue
            killed += reaper.kill_group(pgid)
        for pid, started in self.pids.items():
            killed += reaper.kill_pid(pid, started)
        for path in self.cgroups:
            reaper.remove_cgroup(path)
        unmounted = 0
        if self.mounts:
            from rosey.sandbox import mounts  # only when there is something to unmount

            failed = mounts.unmount_all(self.mounts, lazy=True)  # several at once
            for path, exc in failed.items():
                _say(f"cannot unmount {path}: {exc.strerror}")
            unmounted = len(self.mounts) - len(failed)
        _say(
            f"{why}; killed {killed} process(es) or group(s) the bot left behind"
            + (f", unmounted {unmounted} data folder(s)" if unmounted else "")
        )


def _say(text: str) -> None:
    with contextlib.suppress(OSError):
        os.write(2, f"rosey warden (pid {os.getpid()}): {text}\n".encode())


def _arm_death_signal(signum: int) -> None:
    from rosey.sandbox import prctl  # ctypes, os, sys: nothing that slows the start

    with contextlib.suppress(OSError):  # not Linux: the pipe's end of file still tells us
        prctl.set_death_signal(signum)


def serve(warden: Warden, stdin: int = 0) -> str:
    """Read the bot's lines until ``bye`` or end of file; which of the two it was."""
    buffer = b""
    while True:
        try:
            chunk = os.read(stdin, 65536)
        except OSError:
            chunk = b""
        if not chunk:
            return "eof"
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for raw in lines:
            if not warden.handle(raw.decode("utf-8", "replace")):
                return "bye"


def main(argv: list[str]) -> int:
    bot_pid = int(argv[0])
    warden = Warden(bot_pid)

    def on_death(signum: int, frame: FrameType | None) -> None:
        if warden.swept:  # the main loop is sweeping already (end of file came first)
            return
        warden.sweep(f"bot (pid {bot_pid}) is gone ({signal.Signals(signum).name})")
        os._exit(0)

    for ignored in (signal.SIGINT, signal.SIGHUP):
        signal.signal(ignored, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, on_death)
    signal.signal(signal.SIGUSR1, on_death)
    _arm_death_signal(signal.SIGUSR1)
    if os.getppid() != bot_pid:  # the bot died before the death signal was armed
        return 0
    os.write(1, b"ready\n")
    if serve(warden) == "eof":
        warden.sweep(f"bot (pid {bot_pid}) is gone (its pipe closed)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
