"""Crash recovery as the restart path runs it: the exit is acted on at once (the rest of the
tree is killed, then its output drained), and nothing of the crash is lost on the way.

The restart no longer waits for the rest of the old tree to die by itself before it acts
(``rosey.manager.launch.run_until_exit`` waits for the exit, kills the rest, then drains the
pipes): these tests show the last words still reach the crash report, the exit code is exact,
and no process of the old tree survives the replacement; forked from the fork server as the
bot runs plugins, with and without the bot's sandbox (cgroup leaf, rlimits). The runner's start
path (connecting while the plugin is imported) still reports an import error as such. An exit
of its own (not a stop) readies the restart's cgroup move at once (``restart_ahead``).
"""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest
from test_manager_kit import make_config, running_manager, write_plugin

from helpers import wait_gone
from rosey.sandbox.confine import Sandbox
from rosey.sandbox.process import Confinement, PlainSpawner, PluginProcess


@pytest.mark.parametrize("confined", [False, True], ids=["fork-server", "sandbox"])
async def test_a_crash_keeps_its_last_words_and_exit_code_and_leaves_no_process(
    nats_url: str, tmp_path: Path, sandbox: Sandbox, confined: bool
) -> None:
    write_plugin(tmp_path / "plugins", "p", restart_policy="on-failure")
    spawner = sandbox.spawner() if confined else None
    async with running_manager(
        nats_url, make_config(tmp_path / "plugins", tmp_path), spawner=spawner
    ) as h:
        await h.manager.start_plugin("p")
        supervisor = h.manager.supervisors["p"]
        old = h.pid("p")
        # The whole tree (with a PID namespace: the waiter, init and the plugin).
        tree = [old, *(p.pid for p in psutil.Process(old).children(recursive=True))]
        await h.command("p", "exit", "3")
        crashed = await h.events.wait("p", "crashed")
        ready = await h.events.wait("p", "running", after=h.events.index("p", "crashed"))
        assert ready["previous"] == "starting"
        assert crashed["reason"].startswith("crashed (exit 3)"), crashed
        status = h.manager.get_plugin_status("p")
        assert status["last_exit_code"] == 3
        # Written just before the exit: drained from the pipe after the tree was killed.
        assert "mgr_behave: exiting with code 3" in status["last_error"], status["last_error"]
        assert supervisor.pid not in (None, old)
        assert await wait_gone(tree, timeout=10) == []


async def test_a_plugin_that_cannot_be_imported_fails_its_start_with_the_reason(
    nats_url: str, tmp_path: Path
) -> None:
    """The runner connects to the bus while it imports the plugin: an import that fails still
    ends the start with the import's error (not the connection's), exit 1, nothing left."""
    folder = write_plugin(tmp_path / "plugins", "broken", restart_policy="never")
    source = (folder / "behave.py").read_text()
    (folder / "behave.py").write_text(
        source.replace("\nclass Behave", '\nraise RuntimeError("broken at import")\n\nclass Behave')
    )
    async with running_manager(nats_url, make_config(tmp_path / "plugins", tmp_path)) as h:
        with pytest.raises(Exception, match=r"cannot load behave:Behave: broken at import"):
            await h.manager.start_plugin("broken")
        status = h.manager.get_plugin_status("broken")
        assert status["state"] == "crashed"
        assert status["last_exit_code"] == 1
        assert "cannot load behave:Behave: broken at import" in status["last_error"]


class Recording(Confinement):
    """No layer; counts the restart hints it gets (``restart_ahead``)."""

    def __init__(self) -> None:
        super().__init__()
        self.hints = 0

    def restart_ahead(self) -> None:
        self.hints += 1


async def test_an_exit_of_its_own_readies_the_restart_and_a_stop_does_not(
    nats_url: str, tmp_path: Path
) -> None:
    """``run_until_exit`` tells the confinement when a process ended by itself (its cgroup
    move is primed then, ``SandboxConfinement.restart_ahead``), never when it was stopped."""
    confinements: list[Recording] = []

    def confine(_: PluginProcess) -> Confinement:
        confinements.append(Recording())
        return confinements[-1]

    write_plugin(tmp_path / "plugins", "p", restart_policy="on-failure")
    async with running_manager(
        nats_url, make_config(tmp_path / "plugins", tmp_path), spawner=PlainSpawner(confine=confine)
    ) as h:
        await h.manager.start_plugin("p")
        await h.command("p", "exit", "3")
        await h.events.wait("p", "crashed")
        await h.events.wait("p", "running", after=h.events.index("p", "crashed"))
        await h.manager.stop_plugin("p")
        assert [c.hints for c in confinements] == [1, 0]
