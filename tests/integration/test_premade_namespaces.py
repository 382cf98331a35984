"""Namespaces made ahead by the fork server (``rosey.sandbox.namespaces.premake``), for real.

A child interpreter plays the bot: a child subreaper that has the fork server's ``double_fork``
fork a "plugin" into a PID and IPC namespace made by the intermediate process. The plugin is
pid 2 beside init, the bot's child itself (no waiter), so the bot reads its exit exactly; init
becomes ``sleep infinity`` (holding none of the fork server's memory), reaps what is orphaned
inside, and dies with the bot; when it is ended (the bot ends it once the plugin has ended),
the kernel kills what is left inside, ``setsid`` escapees included. Run as root and as an
unprivileged user (who needs a user namespace for the others).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from privilege import command_as, prepare

_BOT = textwrap.dedent(
    """
    import json, os, select, signal, sys, time
    from rosey.sandbox import forkserver, namespaces, prctl
    from rosey.sandbox.orphans import PR_SET_CHILD_SUBREAPER

    prctl.prctl(PR_SET_CHILD_SUBREAPER, 1)
    how = sys.argv[1]
    report_r, report_w = os.pipe()
    go_plugin_r, go_plugin_w = os.pipe()
    go_orphan_r, go_orphan_w = os.pipe()

    def host_pid():
        return int(os.readlink("/proc/self"))

    def say(**what):
        os.write(report_w, (json.dumps(what) + "\\n").encode())

    def park():
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
        while True:
            time.sleep(3600)

    BOT = os.getpid()

    def plugin():
        made = namespaces.PREMADE
        deadline = time.monotonic() + 30
        while namespaces.outside_parent() != BOT and time.monotonic() < deadline:
            time.sleep(0.001)  # the intermediate process is on its way out (as a standby waits)
        say(
            pid=os.getpid(),
            ppid=os.getppid(),
            outside_pid=namespaces.outside_pid(),
            outside_parent=namespaces.outside_parent(),
            layers=made.outcome.layers if made else None,
        )
        if how == "escapee":
            if os.fork() == 0:
                os.setsid()
                say(escapee=host_pid())
                park()
        if how == "orphan":
            child = os.fork()
            if child == 0:
                if os.fork() == 0:  # re-parented to init when its parent leaves, below
                    say(orphan=host_pid())
                    os.read(go_orphan_r, 1)
                    os._exit(0)
                os._exit(0)
            os.waitpid(child, 0)
        os.read(go_plugin_r, 1)
        if how.startswith("signal"):
            os.kill(os.getpid(), int(how[6:]))  # pid 2 is an ordinary process: this works
        os._exit(int(how[4:]) if how.startswith("exit") else 0)

    pid, reported_init = forkserver.double_fork(plugin, namespaces.Request(pid=True, ipc=True))
    reports = os.fdopen(report_r)
    facts = json.loads(reports.readline())
    facts["bot"], facts["plugin"], facts["reported_init"] = os.getpid(), pid, reported_init
    if how in ("escapee", "orphan"):
        facts.update(json.loads(reports.readline()))
    inits = [int(p) for p in open(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read().split()
             if int(p) != pid]
    facts["inits"] = inits
    facts["init_pid_inside"] = [
        int(line.split()[-1]) for line in open(f"/proc/{inits[0]}/status")
        if line.startswith("NSpid:")
    ] if inits else []
    try:  # (unprivileged: both are undumpable, so only root may read their namespace links)
        facts["same_pidns"] = bool(inits) and (
            os.readlink(f"/proc/{inits[0]}/ns/pid") == os.readlink(f"/proc/{pid}/ns/pid")
        )
    except PermissionError:
        facts["same_pidns"] = None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # init's set-up done: it has become its wait
        with open(f"/proc/{reported_init}/cmdline", "rb") as cmdline:
            facts["init_cmdline"] = cmdline.read().split(b"\\0")[:-1]
        if facts["init_cmdline"][-1:] == [b"infinity"]:
            break
        time.sleep(0.01)  # polling a third party's state: nothing to wait on
    with open(f"/proc/{reported_init}/status") as status:
        rss = [int(line.split()[1]) for line in status if line.startswith("VmRSS:")]
    facts["init_rss_kb"] = rss[0]
    facts["init_cmdline"] = [os.path.basename(part.decode()) for part in facts["init_cmdline"]]
    if how == "orphan":
        os.write(go_orphan_w, b"x")
        deadline = time.monotonic() + 30
        while os.path.exists(f"/proc/{facts['orphan']}") and time.monotonic() < deadline:
            time.sleep(0.01)  # polling a third party's state: nothing to wait on
        facts["orphan_reaped"] = not os.path.exists(f"/proc/{facts['orphan']}")
    watch = os.pidfd_open(facts["escapee"]) if how == "escapee" else None
    os.write(go_plugin_w, b"x")
    _, status = os.waitpid(pid, 0)
    facts["exitcode"] = os.waitstatus_to_exitcode(status)
    os.kill(reported_init, signal.SIGKILL)  # as the bot does once the plugin has ended
    _, status = os.waitpid(reported_init, 0)
    facts["init_end"] = os.waitstatus_to_exitcode(status)
    if watch is not None:  # init's end is the namespace's: the escapee goes with it
        facts["escapee_gone"] = bool(select.select([watch], [], [], 30)[0])
    print(json.dumps(facts), flush=True)
    """
)


def run_bot(how: str, tmp_path: Path, who: str) -> dict[str, Any]:
    """Run the "bot" script; its facts. Its whole group is killed if it fails or hangs (the
    plugin and init are in it)."""
    argv = [sys.executable, "-I", "-c", _BOT, how]
    if who == "unprivileged":
        argv = command_as(prepare(tmp_path)[0], argv)
    bot = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        out, err = bot.communicate(timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(bot.pid, signal.SIGKILL)
        bot.communicate()
    assert bot.returncode == 0, err
    facts: dict[str, Any] = json.loads(out)
    return facts


WHO = ["root", "unprivileged"]


@pytest.mark.parametrize("who", WHO)
@pytest.mark.parametrize(
    ("how", "exitcode"),
    [
        ("exit0", 0),
        ("exit3", 3),
        ("signal9", -signal.SIGKILL),
        ("signal15", -signal.SIGTERM),
        ("signal6", -signal.SIGABRT),
    ],
)
def test_the_plugin_is_the_bots_child_and_its_end_is_read_exactly(
    tmp_path: Path, who: str, how: str, exitcode: int
) -> None:
    facts = run_bot(how, tmp_path, who)
    assert facts["exitcode"] == exitcode
    assert {"pidns", "ipcns"} <= set(facts["layers"])
    assert ("userns" in facts["layers"]) is (who == "unprivileged")
    # pid 2 inside, its parent the bot outside (getppid says 0; /proc names it): no waiter.
    assert (facts["pid"], facts["ppid"]) == (2, 0)
    assert facts["outside_pid"] == facts["plugin"]
    assert facts["outside_parent"] == facts["bot"]
    # Init: the bot's child too, pid 1 in the plugin's namespace; ended once the plugin had.
    assert facts["inits"] == [facts["reported_init"]]  # the fork server names it
    assert facts["init_pid_inside"] == [1]
    assert facts["same_pidns"] is (True if who == "root" else None)
    # Init has become "sleep infinity": none of the fork server's memory is its own any more.
    assert facts["init_cmdline"] == ["sleep", "infinity"]
    assert facts["init_rss_kb"] < 4096, facts["init_rss_kb"]
    assert facts["init_end"] == -signal.SIGKILL


@pytest.mark.parametrize("who", WHO)
def test_a_setsid_escapee_dies_with_the_plugin(tmp_path: Path, who: str) -> None:
    """Init's end, once the plugin's, is the namespace's: what is left in it is killed."""
    facts = run_bot("escapee", tmp_path, who)
    assert facts["exitcode"] == 0
    assert facts["escapee_gone"], f"pid {facts['escapee']} outlived the plugin"


@pytest.mark.parametrize("who", WHO)
def test_init_reaps_what_is_orphaned_inside(tmp_path: Path, who: str) -> None:
    """An orphan re-parented to init leaves no zombie behind while the plugin runs on."""
    facts = run_bot("orphan", tmp_path, who)
    assert facts["orphan_reaped"], f"pid {facts['orphan']} is a zombie of init"
    assert facts["exitcode"] == 0


def test_init_holds_nothing_of_the_plugin() -> None:
    """Init keeps no descriptor of the plugin's (a control socket or output pipe it held would
    stay open while init lives) and runs no thread: once it is ``sleep infinity``, the
    standard three only."""
    script = textwrap.dedent(
        """
        import json, os, signal, time
        from rosey.sandbox import forkserver, namespaces, prctl
        from rosey.sandbox.orphans import PR_SET_CHILD_SUBREAPER

        prctl.prctl(PR_SET_CHILD_SUBREAPER, 1)
        held_r, held_w = os.pipe()  # stands for the plugin's control socket and pipes
        held = os.readlink(f"/proc/self/fd/{held_w}")

        def plugin():
            os.close(held_w)
            os.read(held_r, 1)
            os._exit(0)

        pid, init = forkserver.double_fork(plugin, namespaces.Request(pid=True, ipc=True))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # waiting: a third party's state, nothing to wait on
            with open(f"/proc/{init}/cmdline", "rb") as cmdline:
                if cmdline.read().endswith(b"infinity\\0"):
                    break
            time.sleep(0.01)
        links = [os.readlink(f"/proc/{init}/fd/{fd}") for fd in os.listdir(f"/proc/{init}/fd")]
        threads = len(os.listdir(f"/proc/{init}/task"))
        print(json.dumps({"links": links, "held": held, "threads": threads}), flush=True)
        os.close(held_w)
        os.waitpid(pid, 0)
        os.kill(init, signal.SIGKILL)
        os.waitpid(init, 0)
        """
    )
    done = subprocess.run(
        [sys.executable, "-I", "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    facts = json.loads(done.stdout)
    assert facts["held"] not in facts["links"]
    assert len(facts["links"]) == 3, facts  # stdin, stdout, stderr
    assert facts["threads"] == 1


@pytest.mark.parametrize("who", WHO)
def test_init_and_the_namespace_die_with_the_bot(tmp_path: Path, who: str) -> None:
    """SIGKILL of the bot: init's death signal (armed once the bot adopted it, kept through
    its exec) ends it, and with it the plugin and whatever else is in the namespace."""
    script = textwrap.dedent(
        """
        import os, sys, time
        from rosey.sandbox import forkserver, namespaces, prctl
        from rosey.sandbox.orphans import PR_SET_CHILD_SUBREAPER

        prctl.prctl(PR_SET_CHILD_SUBREAPER, 1)

        def plugin():  # no death signal of its own: only the namespace's end can end it
            while True:
                time.sleep(3600)

        pid, init = forkserver.double_fork(plugin, namespaces.Request(pid=True, ipc=True))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # init armed and exec'd
            with open(f"/proc/{init}/cmdline", "rb") as cmdline:
                if cmdline.read().endswith(b"infinity\\0"):
                    break
            time.sleep(0.01)
        print(pid, init, flush=True)
        time.sleep(3600)
        """
    )
    argv = [sys.executable, "-I", "-c", script]
    if who == "unprivileged":
        argv = command_as(prepare(tmp_path)[0], argv)
    bot = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert bot.stdout is not None
        plugin, init = map(int, bot.stdout.readline().split())
        watches = [os.pidfd_open(plugin), os.pidfd_open(init)]
        bot.kill()
        bot.wait(timeout=30)
        for watch in watches:  # readable: the process has ended (init: into the kernel's
            # namespace teardown, which finishes once the host reaps the orphaned plugin)
            assert select.select([watch], [], [], 30)[0], "init or the plugin outlived the bot"
            os.close(watch)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(bot.pid, signal.SIGKILL)
        bot.communicate(timeout=30)


def test_a_plugin_whose_fork_server_made_no_pid_namespace_has_no_init() -> None:
    """Only a PID namespace needs an init: with IPC alone the plugin is the only process."""
    script = textwrap.dedent(
        """
        import os
        from rosey.sandbox import forkserver, namespaces, prctl
        from rosey.sandbox.orphans import PR_SET_CHILD_SUBREAPER

        prctl.prctl(PR_SET_CHILD_SUBREAPER, 1)
        r, w = os.pipe()

        def plugin():
            os.write(w, str(namespaces.PREMADE.outcome.layers).encode())
            os._exit(0)

        pid, init = forkserver.double_fork(plugin, namespaces.Request(pid=False, ipc=True))
        assert init is None
        print(os.read(r, 100).decode(), flush=True)
        os.waitpid(pid, 0)
        try:
            os.waitpid(-1, 0)
            print("another child", flush=True)
        except ChildProcessError:
            print("no other child", flush=True)
        """
    )
    done = subprocess.run(
        [sys.executable, "-I", "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["['ipcns']", "no other child"]
