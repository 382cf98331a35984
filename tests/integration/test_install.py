"""Install, update, roll back and remove plugins of a running bot (DESIGN 2.10, issue 15).

A real ``rosey run`` subprocess, real plugin folders and archives built here, the real CLI as
a subprocess without a terminal (stdin is /dev/null): what an operator's script sees.
"""

from __future__ import annotations

import asyncio
import json
import os
import pty
from pathlib import Path
from typing import Any

import pytest
from nats.aio.msg import Msg

import privilege
from botproc import FIXTURE_PLUGINS, run_bot, run_rosey
from helpers import wait_gone
from httpface import HTTP_ON, http_api
from installkit import (
    hostile_tarball,
    plugin_folder,
    tarball,
    zip_with_symlink,
    zipped,
)


def listing(folder: Path) -> list[str]:
    """Everything under ``folder``, relative, sorted (hidden staging folders too)."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


async def test_install_update_rollback_remove_purge_through_the_cli(tmp_path: Path) -> None:
    installed = tmp_path / "installed"
    installed.mkdir()
    v1 = tarball(plugin_folder(tmp_path / "src1"), tmp_path / "greeter-1.0.0.tar.gz")
    v2 = zipped(
        plugin_folder(tmp_path / "src2", version="2.0.0", grants=["chat.send"]),
        tmp_path / "greeter-2.0.0.zip",
    )
    async with run_bot(tmp_path, plugins_dirs=[installed]) as bot:
        state = ["--state-dir", str(bot.state_dir)]

        # Install: the grants are shown, and without --yes and a terminal nothing happens.
        code, out, err = await run_rosey("plugin", "install", str(v1), *state)
        assert code == 1, out + err
        assert "plugin greeter 1.0.0 may answer its own commands" in out
        assert "pass --yes" in err
        assert listing(installed) == []
        assert "greeter" not in json.dumps((await bot.manage("list"))["result"])

        code, out, err = await run_rosey("plugin", "install", str(v1), "--yes", *state)
        assert code == 0, out + err
        assert "installed" in out
        assert "started" in out
        assert await bot.chat("!greeter") == "greeter 1.0.0 (note: none)"
        assert await bot.chat("!greeter note keep me") == "noted"

        # Update adding a grant: refused without --yes, the change is shown in words.
        code, out, err = await run_rosey("plugin", "update", "greeter", str(v2), *state)
        assert code == 1, out + err
        assert "grants new: chat.send" in out
        assert "post messages to chat on its own" in out
        assert await bot.chat("!greeter") == "greeter 1.0.0 (note: keep me)"

        code, out, err = await run_rosey("plugin", "update", "greeter", str(v2), "--yes", *state)
        assert code == 0, out + err
        assert "reloaded" in out
        assert await bot.chat("!greeter") == "greeter 2.0.0 (note: keep me)"
        status = (await bot.manage("status", {"plugin": "greeter"}))["result"]
        assert status["version"] == "2.0.0"
        assert status["permissions"] == ["chat.send"]
        assert (bot.state_dir / "versions" / "greeter" / "1.0.0" / "plugin.yaml").is_file()

        # Rollback: 1.0.0 answers again, without the grant; 2.0.0 is kept in turn.
        code, out, err = await run_rosey("plugin", "rollback", "greeter", *state)
        assert code == 0, out + err
        assert await bot.chat("!greeter") == "greeter 1.0.0 (note: keep me)"
        status = (await bot.manage("status", {"plugin": "greeter"}))["result"]
        assert (status["version"], status["permissions"]) == ("1.0.0", [])
        assert (bot.state_dir / "versions" / "greeter" / "2.0.0").is_dir()

        # Remove keeps the data; the command is gone.
        data = bot.state_dir / "data" / "greeter"
        code, out, err = await run_rosey("plugin", "remove", "greeter", *state)
        assert code == 0, out + err
        assert "data folder is kept" in out
        assert not (installed / "greeter").exists()
        assert (data / "note.txt").read_text() == "keep me"
        assert "unknown command" in await bot.chat("!greeter")
        reply = await bot.manage("status", {"plugin": "greeter"})
        assert reply["error"]["code"] == "not_found"

        # Installed again (from a folder this time): it finds its note.
        code, out, err = await run_rosey(
            "plugin", "install", str(tmp_path / "src1"), "--yes", *state
        )
        assert code == 0, out + err
        assert await bot.chat("!greeter") == "greeter 1.0.0 (note: keep me)"

        # Remove --purge: the data folder and the kept versions are gone.
        code, out, err = await run_rosey("plugin", "remove", "greeter", "--purge", *state)
        assert code == 0, out + err
        assert not data.exists() or list(data.iterdir()) == []
        assert not (bot.state_dir / "versions" / "greeter").exists()
        assert [p for p in listing(installed) if not p.startswith(".rosey-staging")] == []
        children = bot.descendants()
        assert await bot.terminate() == 0
        assert await wait_gone(children, timeout=10) == []


async def test_refusals_change_nothing(tmp_path: Path) -> None:
    installed = tmp_path / "installed"
    installed.mkdir()
    plugin_folder(installed / "greeter", version="1.0.0")
    sources = tmp_path / "sources"
    sources.mkdir()
    good = plugin_folder(sources / "good", version="1.0.0")
    async with run_bot(tmp_path, plugins_dirs=[installed]) as bot:
        before = listing(installed)

        async def refused(
            action: str, body: dict[str, object], *needles: str, code: str = "invalid_state"
        ) -> None:
            reply = await bot.manage(action, body)
            assert reply["ok"] is False, reply
            assert reply["error"]["code"] == code, reply
            for needle in needles:
                assert needle in reply["error"]["message"], reply["error"]["message"]
            assert listing(installed) == before
            assert await bot.chat("!greeter") == "greeter 1.0.0 (note: none)"

        # Hostile archives: refused whole, naming the member, nothing written anywhere.
        for kind, needle in [
            ("dotdot", "a '..' part leaving the plugin's folder"),
            ("absolute", "an absolute path"),
            ("symlink", "outside the plugin's folder"),
            ("hardlink", "a link to the absolute path '/etc/shadow'"),
        ]:
            archive = hostile_tarball(good, sources / f"{kind}.tar.gz", kind)
            await refused(
                "install", {"source": str(archive), "yes": True}, needle, code="bad_request"
            )
        link_zip = zip_with_symlink(good, sources / "link.zip")
        await refused(
            "install",
            {"source": str(link_zip), "yes": True},
            "a link to the absolute path",
            code="bad_request",
        )
        assert not any(tmp_path.rglob("escaped.txt"))  # noqa: ASYNC240
        assert not (sources / "absolute.txt").exists()

        # The name is taken; a command is claimed by another plugin.
        await refused(
            "install",
            {"source": str(good), "yes": True},
            "a plugin named 'greeter' is already installed",
        )
        thief = plugin_folder(sources / "thief", name="thief", command="greeter")
        await refused("install", {"source": str(thief), "yes": True}, "!greeter is already claimed")
        # A dependency that is not installed.
        needy = plugin_folder(sources / "needy", name="needy", extra="dependencies: [nosuch]\n")
        await refused("install", {"source": str(needy), "yes": True}, "'nosuch'")
        # requires_rosey that this Rosey does not meet.
        future = plugin_folder(sources / "future", name="future", extra='requires_rosey: ">=99"\n')
        await refused("install", {"source": str(future), "yes": True}, "it needs Rosey >=99")
        # A relative path, a path that is not there, a folder without a manifest.
        await refused("install", {"source": "greeter", "yes": True}, "absolute path")
        nope = {"source": str(tmp_path / "nope"), "yes": True}
        await refused("install", nope, "no such file", code="not_found")
        here = {"source": str(tmp_path), "yes": True}
        await refused("install", here, "without plugin.yaml", code="bad_request")

        # The version must go up on update, unless forced.
        same = plugin_folder(sources / "same", version="1.0.0")
        await refused(
            "update",
            {"plugin": "greeter", "source": str(same), "yes": True},
            "version 1.0.0 is the same as the installed 1.0.0",
            "--force",
        )
        older = plugin_folder(sources / "older", version="0.9.0")
        await refused(
            "update",
            {"plugin": "greeter", "source": str(older), "yes": True},
            "older than the installed 1.0.0",
        )
        other = plugin_folder(sources / "other", name="other", version="2.0.0")
        await refused(
            "update",
            {"plugin": "greeter", "source": str(other), "yes": True},
            "holds plugin 'other', not 'greeter'",
        )
        await refused("rollback", {"plugin": "greeter"}, "no earlier version")

        # An update whose new version cannot start: rolled back, and its folder put back.
        broken = plugin_folder(sources / "broken", version="2.0.0")
        code = (broken / "greeter.py").read_text()
        (broken / "greeter.py").write_text(code + "raise RuntimeError('broken on import')\n")
        reply = await bot.manage("update", {"plugin": "greeter", "source": str(broken)})
        assert reply["ok"] is False, reply
        assert reply["error"]["code"] == "rolled_back", reply
        assert "broken on import" in reply["error"]["message"]
        assert listing(installed) == before
        assert "version: 1.0.0" in (installed / "greeter" / "plugin.yaml").read_text()
        assert not (bot.state_dir / "versions" / "greeter").exists()
        assert await bot.chat("!greeter") == "greeter 1.0.0 (note: none)"
        assert not any(p.name == ".rosey-staging" for p in installed.iterdir())

        # --force installs an older version; the update is kept for rollback.
        reply = await bot.manage(
            "update", {"plugin": "greeter", "source": str(older), "force": True}
        )
        assert reply["ok"] is True, reply
        assert await bot.chat("!greeter") == "greeter 0.9.0 (note: none)"
        assert reply["result"]["previous"] == "1.0.0"


async def test_confirmation_round_trip_over_nats(tmp_path: Path) -> None:
    """Without ``yes`` the reply is ``confirmation_needed`` with the grants in words."""
    installed = tmp_path / "installed"
    installed.mkdir()
    source = plugin_folder(tmp_path / "src", grants=["network", "plugins.call:dice"])
    async with run_bot(tmp_path, plugins_dirs=[installed]) as bot:
        reply = await bot.manage("install", {"source": str(source)})
        assert reply["ok"] is False
        assert reply["error"]["code"] == "confirmation_needed"
        message = reply["error"]["message"]
        assert "network: open network connections to other hosts" in message
        assert "plugins.call:dice: run the commands of plugin 'dice'" in message
        assert listing(installed) == []
        reply = await bot.manage("install", {"source": str(source), "yes": True})
        assert reply["ok"] is True, reply
        assert reply["result"]["status"]["state"] == "running"
        assert reply["result"]["status"]["permissions"] == ["network", "plugins.call:dice"]


async def test_install_and_remove_over_http(tmp_path: Path) -> None:
    installed = tmp_path / "installed"
    installed.mkdir()
    source = tarball(plugin_folder(tmp_path / "src", grants=["storage"]), tmp_path / "g.tar.gz")
    async with (
        run_bot(tmp_path, plugins_dirs=[installed], config=HTTP_ON) as bot,
        http_api(bot) as api,
    ):
        body = json.dumps({"source": str(source)}).encode()
        status, reply = await api.post("/api/plugins/greeter/install", data=body)
        assert status == 409, reply
        assert reply["error"]["code"] == "confirmation_needed"
        assert "storage: keep data in a key-value store" in reply["error"]["message"]
        assert listing(installed) == []
        # The path names the plugin the source must hold.
        body = json.dumps({"source": str(source), "yes": True}).encode()
        status, reply = await api.post("/api/plugins/other/install", data=body)
        assert status == 409, reply
        assert "holds plugin 'greeter', not 'other'" in reply["error"]["message"]
        status, reply = await api.post("/api/plugins/greeter/install", data=body)
        assert status == 200, reply
        assert reply["result"]["status"]["state"] == "running"
        assert await bot.chat("!greeter") == "greeter 1.0.0 (note: none)"
        status, reply = await api.post(
            "/api/plugins/greeter/remove", data=json.dumps({"purge": True}).encode()
        )
        assert status == 200, reply
        assert reply["result"]["status"] is None
        assert listing(installed) == []


async def test_install_builds_the_requirements_first_and_a_failed_build_installs_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plugin with ``requirements`` gets its environment at install (real uv, real index);
    one whose requirement cannot be installed is refused, naming it, with nothing left."""
    monkeypatch.setenv("UV_CACHE_DIR", str(tmp_path / "uv-cache"))
    installed = tmp_path / "installed"
    installed.mkdir()
    broken = plugin_folder(
        tmp_path / "broken", name="broken", extra='requirements: ["rosey-no-such-pkg==1.0"]\n'
    )
    async with run_bot(tmp_path, plugins_dirs=[installed]) as bot:
        reply = await bot.manage("install", {"source": str(broken), "yes": True}, timeout=300)
        assert reply["ok"] is False, reply
        assert reply["error"]["code"] == "invalid_state"
        assert "rosey-no-such-pkg" in reply["error"]["message"]
        assert listing(installed) == []
        envs = bot.state_dir / "envs"
        assert not envs.exists() or [p for p in envs.iterdir() if not p.name.startswith(".")] == []

        source = str(FIXTURE_PLUGINS / "env_six_new")
        reply = await bot.manage("install", {"source": source, "yes": True}, timeout=300)
        assert reply["ok"] is True, reply
        answer = await bot.chat("!sixnew", timeout=30)
        assert answer.startswith("six 1.16.0 in "), answer
        assert str(envs.resolve()) in answer


async def test_storage_plugin_removed_and_installed_again(tmp_path: Path) -> None:
    """Regression: removing a ``storage`` plugin (or rolling back to a version without the
    grant) lowers the broker's JetStream budget, and nats-server refuses a reload that lowers
    it, so the next install or rollback failed with ``config reload not supported for
    decreasing jetstream max memory and store``. The budget now only grows until a restart."""
    installed = tmp_path / "installed"
    installed.mkdir()
    v1 = plugin_folder(tmp_path / "v1", name="keeper")
    v2 = plugin_folder(tmp_path / "v2", name="keeper", version="2.0.0", grants=["storage"])
    steps: list[tuple[str, dict[str, Any]]] = [
        ("install", {"source": str(v1), "yes": True}),
        ("update", {"plugin": "keeper", "source": str(v2), "yes": True}),
        ("rollback", {"plugin": "keeper"}),
        ("remove", {"plugin": "keeper"}),
        ("install", {"source": str(v2), "yes": True}),
        ("remove", {"plugin": "keeper", "purge": True}),
        ("install", {"source": str(v1), "yes": True}),
    ]
    async with run_bot(tmp_path, plugins_dirs=[installed]) as bot:
        for action, body in steps:
            reply = await bot.manage(action, body)
            assert reply["ok"] is True, (action, reply)
        assert await bot.chat("!keeper") == "keeper 1.0.0 (note: none)"


STASH_CODE = '''\
"""Keeps one value in its storage bucket."""

from rosey.sdk import CommandContext, Plugin, command


class Stash(Plugin):
    @command("stash")
    async def stash(self, ctx: CommandContext) -> str:
        """Keep a value, or say the one kept: !stash [VALUE]."""
        bucket = await self.storage()
        if ctx.args:
            await bucket.put("value", " ".join(ctx.args).encode())
            return "kept"
        value = await bucket.get("value")
        return "kept: " + (value.decode() if value is not None else "nothing")
'''


def stash_folder(where: Path) -> Path:
    where.mkdir(parents=True)
    (where / "plugin.yaml").write_text(
        "name: stash\nversion: 1.0.0\nentrypoint: stash:Stash\ncommands: [stash]\n"
        "permissions: [storage]\n"
    )
    (where / "stash.py").write_text(STASH_CODE)
    return where


async def test_remove_keeps_the_storage_bucket_and_purge_deletes_it(tmp_path: Path) -> None:
    """``remove`` keeps what the plugin stored in its bucket (data, like its folder);
    ``remove --purge`` deletes the bucket with the rest."""
    installed = tmp_path / "installed"
    installed.mkdir()
    source = stash_folder(tmp_path / "src")
    async with run_bot(tmp_path, plugins_dirs=[installed]) as bot:
        install = {"source": str(source), "yes": True}
        assert (await bot.manage("install", install))["ok"] is True
        assert await bot.chat("!stash apples") == "kept"
        assert (await bot.manage("remove", {"plugin": "stash"}))["ok"] is True
        assert (await bot.manage("install", install))["ok"] is True
        assert await bot.chat("!stash") == "kept: apples"
        reply = await bot.manage("remove", {"plugin": "stash", "purge": True})
        assert reply["ok"] is True, reply
        assert "its storage bucket" in json.dumps(reply["result"]), reply
        assert (await bot.manage("install", install))["ok"] is True
        assert await bot.chat("!stash") == "kept: nothing"


async def test_a_yes_at_a_terminal_installs_and_a_no_does_not(tmp_path: Path) -> None:
    """At a terminal the CLI asks; ``y`` accepts, anything else leaves nothing installed."""
    installed = tmp_path / "installed"
    installed.mkdir()
    source = plugin_folder(tmp_path / "src", grants=["events.message"])
    admins = 'admins: ["test:boss"]\n'
    async with run_bot(tmp_path, plugins_dirs=[installed], config=admins) as bot:

        async def answered(answer: str) -> tuple[int, str]:
            main, terminal = pty.openpty()
            try:
                os.write(main, answer.encode() + b"\n")  # waits there for the CLI's question
                code, out, _ = await run_rosey(
                    "plugin", "install", str(source), "--state-dir", str(bot.state_dir),
                    stdin=terminal, stderr=asyncio.subprocess.STDOUT,
                )  # fmt: skip
            finally:
                os.close(main)
                os.close(terminal)
            return code, out

        code, out = await answered("n")
        assert code == 1, out
        assert "events.message: read every chat message" in out
        assert "nothing was done (not accepted)" in out
        assert listing(installed) == []
        # Chat shows the grants too, and cannot say yes.
        reply = await bot.chat(f"!plugin install {source}", user="boss")
        assert "events.message: read every chat message" in reply
        assert "(confirmation_needed)" in reply
        assert listing(installed) == []

        code, out = await answered("y")
        assert code == 0, out
        assert "install it? [y/N]" in out
        assert "started: it answers !greeter" in out
        assert await bot.chat("!greeter") == "greeter 1.0.0 (note: none)"


async def test_install_update_rollback_remove_as_an_unprivileged_bot(tmp_path: Path) -> None:
    """The same round trip with the bot running as an ordinary user (as operators run it)."""
    user = privilege.ensure_user()
    installed = tmp_path / "installed"
    installed.mkdir()
    os.chown(installed, user.pw_uid, user.pw_gid)
    v1 = tarball(plugin_folder(tmp_path / "src1"), tmp_path / "greeter-1.0.0.tar.gz")
    v2 = zipped(
        plugin_folder(tmp_path / "src2", version="2.0.0", grants=["chat.send"]),
        tmp_path / "greeter-2.0.0.zip",
    )
    steps: list[tuple[str, dict[str, Any], str]] = [
        ("install", {"source": str(v1), "yes": True}, "greeter 1.0.0 (note: none)"),
        ("update", {"plugin": "greeter", "source": str(v2), "yes": True}, "greeter 2.0.0"),
        ("rollback", {"plugin": "greeter"}, "greeter 1.0.0"),
    ]
    async with run_bot(tmp_path, plugins_dirs=[installed], unprivileged=True) as bot:
        for action, body, answer in steps:
            reply = await bot.manage(action, body)
            assert reply["ok"] is True, (action, reply)
            assert (await bot.chat("!greeter")).startswith(answer)
        assert (installed / "greeter").stat().st_uid == user.pw_uid
        assert await bot.chat("!greeter note mine") == "noted"
        reply = await bot.manage("remove", {"plugin": "greeter", "purge": True})
        assert reply["ok"] is True, reply
        assert listing(installed) == []
        data = bot.state_dir / "data" / "greeter"
        assert not data.exists() or list(data.iterdir()) == []


async def test_remove_stops_the_dependents_and_says_which(tmp_path: Path) -> None:
    installed = tmp_path / "installed"
    installed.mkdir()
    plugin_folder(installed / "base", name="base")
    plugin_folder(installed / "upper", name="upper", extra="dependencies: [base]\n")
    async with run_bot(tmp_path, plugins_dirs=[installed]) as bot:
        assert await bot.chat("!upper") == "upper 1.0.0 (note: none)"
        reply = await bot.manage("remove", {"plugin": "base"})
        assert reply["ok"] is True, reply
        assert (
            "stopped its dependents (they now miss a dependency): upper"
            in reply["result"]["report"]
        )
        status = (await bot.manage("status", {"plugin": "upper"}))["result"]
        assert status["state"] == "stopped"
        assert "'base', which is not installed" in status["last_error"]
        assert "not running" in await bot.chat("!upper")
        # A dependent of a plugin cannot be installed before what it depends on.
        again = plugin_folder(tmp_path / "upper2", name="upper2", extra="dependencies: [base]\n")
        reply = await bot.manage("install", {"source": str(again), "yes": True})
        assert reply["error"]["code"] == "invalid_state"
        assert "it depends on 'base', which is not installed" in reply["error"]["message"]
        # Installed again: the dependent it took down comes back with it.
        assert bot.nc is not None
        running = asyncio.Event()

        async def on_event(msg: Msg) -> None:
            if json.loads(msg.data)["state"] == "running":
                running.set()

        await bot.nc.subscribe("rosey.manager.events.upper", cb=on_event)
        await bot.nc.flush()
        source = plugin_folder(tmp_path / "base_again", name="base")
        reply = await bot.manage("install", {"source": str(source), "yes": True})
        assert reply["ok"] is True, reply
        async with asyncio.timeout(15):
            await running.wait()
        assert await bot.chat("!upper") == "upper 1.0.0 (note: none)"
