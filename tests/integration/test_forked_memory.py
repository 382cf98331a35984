"""What keeps a forked plugin's tree small (issue 13, "idle plugin USS"; figures in
bench/plugin_start.py): the fork server preloads every module the runner needs after the fork,
the namespace helpers fork without the interpreter's at-fork work and never return from
``branch``, and the waiter → init → plugin chain still ends exactly as the plugin did, relays a
stop, and takes the namespace along when the waiter dies, as root and unprivileged."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest
from test_forkserver import box, fork_spawner, until_ready  # noqa: F401 (box: a fixture)

import privilege
from rosey.sandbox.confine import Sandbox
from rosey.sandbox.process import SpawnSpec
from rosey.sandbox.spec import base_env

#: Writes the modules it finds loaded, and which of them came after the fork (nothing but
#: itself should: the rest is shared with the fork server, not copied into every plugin).
_CENSUS = """
import json, sys
from rosey.sdk import Plugin

LOADED_AT_IMPORT = sorted(sys.modules)


class Census(Plugin):
    async def on_start(self):
        (self.data_dir / "modules.json").write_text(json.dumps(LOADED_AT_IMPORT))
"""

#: The fork server's modules: what ``python -I -m rosey.sandbox.forkserver`` has loaded when it
#: answers its first request (its entry module and ``preload``; ``runpy`` for ``-m``).
_SERVER_MODULES = textwrap.dedent(
    """
    import json, runpy, sys
    import rosey.sandbox.forkserver
    import rosey.sdk.runner
    rosey.sdk.runner.preload()
    print(json.dumps(sorted(sys.modules)))
    """
)


def _every_layer(folder: Path, data: Path, nats_url: str) -> dict[str, object]:
    """The bootstrap with every layer the manager asks for by default (spawnspec)."""
    port = int(nats_url.rsplit(":", 1)[1])
    return {
        "name": "census",
        "plugin_dir": str(folder),
        "entrypoint": "census:Census",
        "data_dir": str(data),
        "nats_url": nats_url,
        "config": {},
        "stop_timeout_s": 5,
        "isolation": {"pid_namespace": True, "ipc_namespace": True, "plugin_uids": False},
        "sandbox": {
            "read": [str(folder.resolve())],
            "write": [str(data)],
            "connect_ports": [port],
            "network": False,
        },
        "seccomp": {"network": False},
    }


async def test_a_forked_plugin_imports_nothing_the_fork_server_did_not_preload(
    box: Sandbox,  # noqa: F811
    nats_url: str,
    tmp_path: Path,
) -> None:
    folder, data = tmp_path / "census", tmp_path / "data" / "census"
    folder.mkdir()
    data.mkdir(parents=True)
    (folder / "census.py").write_text(_CENSUS)
    spec = SpawnSpec(
        name="census",
        plugin_dir=folder,
        data_dir=data,
        log_path=tmp_path / "logs" / "census.log",
        bootstrap=_every_layer(folder, data, nats_url),
    )
    process = await fork_spawner(box).spawn(spec)
    try:
        assert process.how == "forked"
        await until_ready(process)
    finally:
        await process.stop(5)
    loaded = set(json.loads((data / "modules.json").read_text()))
    # In the fork server's own environment: without HOME, site's start imports pwd.
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-I", "-c", _SERVER_MODULES, env=base_env(), stdout=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(60):
        out, _ = await server.communicate()
    assert server.returncode == 0
    preloaded = set(json.loads(out))
    after_fork = loaded - preloaded - {"census"}
    assert not after_fork, (
        f"imported after the fork, so copied into every plugin: {sorted(after_fork)}; "
        "import them in the fork server (rosey.sdk.runner.preload)"
    )


_HOOKS = textwrap.dedent(
    """
    import os, sys, threading
    from rosey.sandbox import namespaces

    os.register_at_fork(after_in_child=lambda: os.write(1, b"hook "))
    if sys.argv[1] == "thread":
        gate = threading.Event()
        threading.Thread(target=gate.wait, daemon=True).start()
    pid = namespaces.fork_bare()
    if pid == 0:
        os.write(1, b"child")
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    """
)


@pytest.mark.parametrize(("threads", "output"), [("alone", "child"), ("thread", "hook child")])
def test_the_helpers_fork_without_at_fork_hooks_only_when_single_threaded(
    threads: str, output: str
) -> None:
    """The at-fork handlers would copy ~0.7 MiB of pages into the waiter's child and init's;
    with another thread they must run (a lock it holds must be reset in the child)."""
    done = subprocess.run(
        [sys.executable, "-I", "-c", _HOOKS, threads],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == output


_CHAIN = textwrap.dedent(
    """
    import os, sys
    from rosey.sandbox import namespaces

    kept_r, kept_w = os.pipe()
    outcome = namespaces.enter(namespaces.Request(pid=True, ipc=True))
    assert outcome.flags & namespaces.CLONE_NEWPID, outcome.missing
    namespaces.branch(close=(kept_w,))  # returns only in the plugin
    assert (os.getpid(), os.getppid()) == (2, 1)
    os.write(kept_w, b"kept")  # the plugin keeps what the helpers close
    how = sys.argv[1]
    if how.startswith("exit"):
        os._exit(int(how[4:]))
    os.kill(os.getpid(), int(how[6:]))
    os._exit(99)
    """
)


@pytest.mark.parametrize("who", ["root", "unprivileged"])
@pytest.mark.parametrize(
    ("how", "returncode"),
    [("exit0", 0), ("exit3", 3), ("signal9", -signal.SIGKILL), ("signal15", -signal.SIGTERM)],
)
def test_the_chain_ends_as_the_plugin_did_as_root_and_unprivileged(
    tmp_path: Path, who: str, how: str, returncode: int
) -> None:
    argv = [sys.executable, "-I", "-c", _CHAIN, how]
    if who == "unprivileged":  # a user namespace too, and fork_bare in all three
        argv = privilege.command_as(privilege.prepare(tmp_path)[0], argv)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert done.returncode == returncode, done.stderr


_IDLE = textwrap.dedent(
    """
    import os, signal, sys
    from rosey.sandbox import namespaces

    outcome = namespaces.enter(namespaces.Request(pid=True, ipc=True))
    assert outcome.flags & namespaces.CLONE_NEWPID, outcome.missing
    namespaces.branch()
    signal.signal(signal.SIGTERM, lambda *_: os._exit(7))
    os.write(1, b"ready\\n")
    while True:
        signal.pause()
    """
)


def _start_idle(tmp_path: Path, who: str) -> tuple[subprocess.Popen[bytes], list[psutil.Process]]:
    """The waiter, once the plugin is up; and init and the plugin (outside pids)."""
    argv = [sys.executable, "-I", "-c", _IDLE]
    if who == "unprivileged":
        argv = privilege.command_as(privilege.prepare(tmp_path)[0], argv)
    waiter = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert waiter.stdout is not None
    ready, _, _ = select.select([waiter.stdout], [], [], 30)
    if not ready or waiter.stdout.readline() != b"ready\n":
        waiter.kill()
        _, err = waiter.communicate(timeout=30)
        pytest.fail(f"the plugin did not start: {err.decode()}")
    return waiter, psutil.Process(waiter.pid).children(recursive=True)


def _end(waiter: subprocess.Popen[bytes], helpers: list[psutil.Process]) -> None:
    """Kill what is left of the tree (something is only if the test failed)."""
    for helper in helpers:  # by pid: psutil refuses a process whose parent changed
        with contextlib.suppress(OSError):
            os.kill(helper.pid, signal.SIGKILL)
    waiter.kill()
    waiter.communicate(timeout=30)


@pytest.mark.parametrize("who", ["root", "unprivileged"])
def test_the_waiter_relays_sigterm_sent_to_its_pid_alone(tmp_path: Path, who: str) -> None:
    """The plugin leads its own group: only the waiter's relay (through init) can bring it this
    SIGTERM."""
    waiter, helpers = _start_idle(tmp_path, who)
    try:
        waiter.send_signal(signal.SIGTERM)
        assert waiter.wait(timeout=30) == 7  # the plugin's handler's code, relayed
    finally:
        _end(waiter, helpers)


@pytest.mark.parametrize("who", ["root", "unprivileged"])
def test_the_namespace_dies_with_the_waiter(tmp_path: Path, who: str) -> None:
    """SIGKILL to the waiter alone (not its group): init dies of its death signal, and the
    kernel kills the plugin with it."""
    waiter, helpers = _start_idle(tmp_path, who)
    try:
        assert len(helpers) == 2, helpers  # init and the plugin
        gone = [os.pidfd_open(helper.pid) for helper in helpers]
        waiter.kill()
        waiter.wait(timeout=30)
        for fd in gone:
            readable, _, _ = select.select([fd], [], [], 30)  # readable: the process ended
            os.close(fd)
            assert readable, "init or the plugin outlived the waiter"
    finally:
        _end(waiter, helpers)
