"""``zombie_children`` reads only the bot's own children (its threads' ``children`` files).

A sweep of the orphan reaper must not read every ``/proc/PID/stat`` of the machine (with 100
plugins, ~700 reads per SIGCHLD); it must still find a zombie whatever thread started it, and
leave out the pids it is told to skip (the claimed ones: their own waiter reaps them).
"""

from __future__ import annotations

import os
import subprocess
import threading
import time

from rosey.sandbox.orphans import _children, zombie_children


def wait_zombie(pid: int) -> None:
    deadline = time.monotonic() + 5
    while True:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            if b") Z " in fh.read():
                return
        assert time.monotonic() < deadline, f"{pid} did not become a zombie"
        time.sleep(0.005)


def test_a_zombie_of_a_worker_thread_is_found_and_skip_is_honoured() -> None:
    started: list[subprocess.Popen[bytes]] = []
    thread = threading.Thread(target=lambda: started.append(subprocess.Popen(["true"])))
    thread.start()
    thread.join()  # its task is gone: the child is re-parented to the process (the main thread)
    main = subprocess.Popen(["true"])
    try:
        wait_zombie(main.pid)
        wait_zombie(started[0].pid)
        found = zombie_children(os.getpid())
        assert {main.pid, started[0].pid} <= set(found)
        assert main.pid not in zombie_children(os.getpid(), skip={main.pid})
    finally:
        main.wait()
        started[0].wait()
    assert not {main.pid, started[0].pid} & set(zombie_children(os.getpid()))


def test_children_lists_a_live_child_from_a_live_thread() -> None:
    box: list[subprocess.Popen[bytes]] = []
    go = threading.Event()

    def start() -> None:
        box.append(subprocess.Popen(["sleep", "5"]))
        go.wait(5)

    thread = threading.Thread(target=start)
    thread.start()
    try:
        deadline = time.monotonic() + 5
        while not box:
            assert time.monotonic() < deadline
            time.sleep(0.005)
        children = _children(os.getpid())
        assert children is not None, "the kernel lists children (CONFIG_PROC_CHILDREN)"
        assert box[0].pid in children  # the worker thread's own children file
    finally:
        go.set()
        thread.join()
        box[0].kill()
        box[0].wait()
