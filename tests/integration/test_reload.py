"""Reload (DESIGN 2.10) with a real manager, real nats-server and real plugin processes.

The plugin folders are copies of the ``reloadable`` fixture whose code (``VERSION``) and
manifest the tests change on disk before each reload.
"""

from __future__ import annotations

import asyncio
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_manager_kit import Harness, make_config, running_manager

from helpers import chat_command
from rosey.errors import DependencyNotRunning, RolledBack
from rosey.protocol import subjects

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "plugins" / "reloadable"
HEALTH = {"interval_s": 30, "timeout_s": 2, "failure_threshold": 3, "start_timeout_s": 20}


def write_reloadable(root: Path, name: str, **manifest: Any) -> Path:
    """A copy of the fixture as plugin ``name``; ``manifest`` keys override its plugin.yaml."""
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(FIXTURE / "reloadable.py", folder / "reloadable.py")
    data: dict[str, Any] = {
        "name": name,
        "version": "1.0.0",
        "entrypoint": "reloadable:Reloadable",
        "commands": [f"{name}_whoami"],
        "health": HEALTH,
        "config": {},
    }
    data.update(manifest)
    (folder / "plugin.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return folder


def edit_manifest(folder: Path, **changes: Any) -> None:
    data = yaml.safe_load((folder / "plugin.yaml").read_text())
    data.update(changes)
    (folder / "plugin.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


def set_version(folder: Path, version: str) -> None:
    module = folder / "reloadable.py"
    text = module.read_text()
    start = text.index('VERSION = "')
    end = text.index('"', start + len('VERSION = "'))
    module.write_text(text[:start] + f'VERSION = "{version}' + text[end:])


def break_import(folder: Path, why: str) -> None:
    """The module raises ``ImportError(why)`` when imported (it still parses)."""
    module = folder / "reloadable.py"
    text = module.read_text()
    module.write_text(
        text.replace("import asyncio\n", f"import asyncio\nraise ImportError({why!r})\n", 1)
    )


async def ask(h: Harness, plugin: str, command: str, *args: str, timeout: float = 10) -> Any:
    reply = await h.command(plugin, command, *args, timeout=timeout)
    assert reply["ok"], reply
    return reply["text"]


async def test_reload_switches_code_and_manifest_and_the_old_instance_hands_over(
    nats_url: str, tmp_path: Path
) -> None:
    folder = write_reloadable(tmp_path / "plugins", "p", commands=["p_a"])
    config = make_config(tmp_path / "plugins", tmp_path, reload_probation_s=0.3)
    async with running_manager(nats_url, config) as h:
        await h.manager.start_plugin("p")
        first_pid = h.pid("p")
        old_id = (await ask(h, "p", "whoami")).split()[0]
        assert await ask(h, "p", "count") == "1"
        set_version(folder, "2")
        edit_manifest(
            folder, version="1.1.0", commands=["p_b"], limits={"memory_mb": 300}, config={"k": 1}
        )
        status = await h.manager.reload_plugin("p")
        assert status["state"] == "running"
        assert status["version"] == "1.1.0"
        assert status["stats"]["pid"] != first_pid
        assert status["crash_count"] == 0
        assert status["last_error"] is None
        assert (await ask(h, "p", "whoami")).endswith(" v2")
        assert await ask(h, "p", "count") == "2"  # the data folder is the same one
        assert h.manager.commands().get("p_b") == "p"
        assert "p_a" not in h.manager.commands()
        manifest = h.manager.supervisors["p"].manifest
        assert manifest.limits.memory_mb == 300
        assert manifest.config == {"k": 1}
        note = tmp_path / "data" / "p" / f"stop-{old_id}.txt"
        await h.manager.supervisors["p"].wait_retired()
        assert note.read_text() == "replaced"
        assert first_pid not in [h.pid("p")]
        # the state stayed running throughout: no stop, no start of the plugin itself
        assert h.events.states("p") == ["starting", "running"]
        # A plain stop is no replacement.
        new_id = (await ask(h, "p", "whoami")).split()[0]
        await h.manager.stop_plugin("p")
        assert (tmp_path / "data" / "p" / f"stop-{new_id}.txt").read_text() == "stopped"


async def test_reload_under_steady_load_loses_no_command(nats_url: str, tmp_path: Path) -> None:
    """Senders keep 40 commands in flight while the plugin is reloaded three times; each
    command holds the plugin's event loop for 2 ms, so requests queue up unread in the old
    instance's connection when it is told to go: every single one is still answered ok, by
    old and new instances alike (a plain stop-and-unsubscribe drops the queued ones)."""
    folder = write_reloadable(tmp_path / "plugins", "p")
    config = make_config(tmp_path / "plugins", tmp_path, reload_probation_s=0.2)
    async with running_manager(nats_url, config) as h:
        await h.manager.start_plugin("p")
        stop = asyncio.Event()
        answered: Counter[str] = Counter()
        failures: list[Any] = []

        async def sender() -> None:
            while not stop.is_set():
                request = chat_command("busy", "0.002")
                try:
                    msg = await h.client.request(subjects.command_execute("p"), request, timeout=10)
                except Exception as exc:  # a lost command: counted, not raised
                    failures.append(repr(exc))
                    continue
                reply = msg.json()
                if reply["ok"]:
                    answered[reply["text"].split()[0]] += 1
                else:
                    failures.append(reply)

        senders = [asyncio.create_task(sender()) for _ in range(40)]
        try:
            for version in ("2", "3", "4"):
                await asyncio.sleep(0.3)
                set_version(folder, version)
                await h.manager.reload_plugin("p")
            await asyncio.sleep(0.3)
        finally:
            stop.set()
            await asyncio.gather(*senders)
        assert failures == []
        assert len(answered) >= 4, answered  # four instances answered in turn
        assert sum(answered.values()) > 200


@pytest.mark.parametrize(
    ("cause", "stage", "words"),
    [
        ("bad manifest", "manifest", "version"),
        ("syntax error", "manifest", "does not parse"),
        ("import error", "start", "ImportError: no module named nowhere"),
        ("crash on start", "start", "exited during start"),
        ("never ready", "start", "was not ready within 1 s"),
        ("crash in probation", "probation", "exited during its probation"),
        ("unhealthy in probation", "probation", "unhealthy: no answer to a health ping"),
        ("command taken", "commands", "!q_whoami is already claimed by plugin 'q'"),
        ("cycle", "dependencies", "dependency cycle"),
        ("missing dependency", "dependencies", "'ghost', which is not installed"),
    ],
)
async def test_a_failed_reload_rolls_back_and_the_old_instance_keeps_serving(
    nats_url: str, tmp_path: Path, cause: str, stage: str, words: str
) -> None:
    plugins = tmp_path / "plugins"
    folder = write_reloadable(plugins, "p")
    write_reloadable(plugins, "q", dependencies=["p"])
    config = make_config(plugins, tmp_path, reload_probation_s=1.0)
    async with running_manager(nats_url, config) as h:
        await h.manager.start_all()
        before = await ask(h, "p", "whoami")
        pid = h.pid("p")
        module = folder / "reloadable.py"
        if cause == "bad manifest":
            edit_manifest(folder, version="one")
        elif cause == "syntax error":
            module.write_text(module.read_text() + "\ndef broken(:\n")
        elif cause == "import error":
            break_import(folder, "no module named nowhere")
        elif cause == "crash on start":
            module.write_text(
                module.read_text().replace("self.instance = uuid.uuid4().hex[:8]", "os._exit(4)")
            )
        elif cause == "never ready":
            module.write_text(
                module.read_text().replace(
                    "self.instance = uuid.uuid4().hex[:8]",
                    "self.instance = 'x'\n        await asyncio.sleep(30)",
                )
            )
            edit_manifest(folder, health={**HEALTH, "start_timeout_s": 1})
        elif cause == "crash in probation":
            edit_manifest(folder, config={"exit_after_s": 0.2})
        elif cause == "unhealthy in probation":
            module.write_text(
                module.read_text().replace(
                    "exit_after = self.config.get",
                    "asyncio.get_running_loop().call_later(0.1, __import__('time').sleep, 5)\n"
                    "        exit_after = self.config.get",
                )
            )
            edit_manifest(folder, health={**HEALTH, "timeout_s": 0.5})
        elif cause == "command taken":
            edit_manifest(folder, commands=["p_whoami", "q_whoami"])
        elif cause == "cycle":
            edit_manifest(folder, dependencies=["q"])
        elif cause == "missing dependency":
            edit_manifest(folder, dependencies=["ghost"])
        with pytest.raises(RolledBack) as caught:
            await h.manager.reload_plugin("p")
        error = caught.value
        assert error.code == "rolled_back"
        assert error.stage == stage, str(error)
        assert words in str(error)
        status = h.manager.get_plugin_status("p")
        assert status["state"] == "running"
        assert status["stats"]["pid"] == pid
        assert status["crash_count"] == 0
        assert status["last_error"] == str(error)
        assert status["dependencies"] == []
        assert await ask(h, "p", "whoami") == before
        assert h.manager.commands()["p_whoami"] == "p"
        assert h.manager.get_plugin_status("q")["state"] == "running"


async def test_restart_rereads_the_manifest_and_refuses_an_invalid_one(
    nats_url: str, tmp_path: Path
) -> None:
    folder = write_reloadable(tmp_path / "plugins", "p", commands=["p_a"])
    async with running_manager(nats_url, make_config(tmp_path / "plugins", tmp_path)) as h:
        await h.manager.start_plugin("p")
        pid = h.pid("p")
        edit_manifest(folder, version="x.y")
        with pytest.raises(RolledBack, match=r"restart of plugin 'p' refused \(manifest\)"):
            await h.manager.restart_plugin("p")
        assert h.pid("p") == pid  # nothing was stopped
        edit_manifest(folder, version="2.0.0", commands=["p_b"], limits={"memory_mb": 200})
        status = await h.manager.restart_plugin("p")
        assert status["version"] == "2.0.0"
        assert status["stats"]["pid"] != pid
        assert h.manager.commands().get("p_b") == "p"
        assert "p_a" not in h.manager.commands()
        assert h.manager.supervisors["p"].manifest.limits.memory_mb == 200


async def test_dependents_come_back_with_their_dependency(nats_url: str, tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    write_reloadable(plugins, "a")
    write_reloadable(plugins, "b", dependencies=["a"])
    c = write_reloadable(plugins, "c", dependencies=["b"])
    write_reloadable(plugins, "d", dependencies=["a"])
    async with running_manager(nats_url, make_config(plugins, tmp_path)) as h:
        await h.manager.start_all()
        await h.manager.stop_plugin("d")  # stopped on purpose: stays stopped
        await h.manager.stop_plugin("a")
        assert {n: h.manager.get_plugin_status(n)["state"] for n in "abcd"} == dict.fromkeys(
            "abcd", "stopped"
        )
        mark = len(h.events.events)
        await h.manager.start_plugin("a")
        states = {n: h.manager.get_plugin_status(n)["state"] for n in "abcd"}
        assert states == {"a": "running", "b": "running", "c": "running", "d": "stopped"}
        await h.events.wait("c", "running", after=mark)  # events are published behind
        back = h.events.index("a", "running", after=mark)
        assert (
            back
            < h.events.index("b", "running", after=mark)
            < h.events.index("c", "running", after=mark)
        )
        # One that cannot come back says why.
        await h.manager.stop_plugin("a")
        (c / "reloadable.py").write_text("raise ImportError('c is broken now')\n")
        await h.manager.restart_plugin("a")
        status = h.manager.get_plugin_status("c")
        assert status["state"] != "running"
        assert status["last_error"].startswith("did not come back after its dependency a:")
        assert h.manager.get_plugin_status("b")["state"] == "running"
        # A reload of the dependency leaves its dependents running throughout.
        await h.manager.reload_plugin("a")
        assert h.manager.get_plugin_status("b")["state"] == "running"


async def test_reload_is_refused_when_a_new_dependency_is_not_running(
    nats_url: str, tmp_path: Path
) -> None:
    plugins = tmp_path / "plugins"
    folder = write_reloadable(plugins, "a")
    write_reloadable(plugins, "b")
    async with running_manager(nats_url, make_config(plugins, tmp_path)) as h:
        await h.manager.start_plugin("a")
        edit_manifest(folder, dependencies=["b"])
        with pytest.raises(RolledBack) as caught:
            await h.manager.reload_plugin("a")
        assert str(DependencyNotRunning("a", "b", "stopped")) in str(caught.value)
        await h.manager.start_plugin("b")
        status = await h.manager.reload_plugin("a")
        assert status["dependencies"] == ["b"]
        assert h.manager.get_plugin_status("b")["dependents"] == ["a"]
