"""Reload through a real bot (``rosey run`` in a subprocess, embedded broker enforcing grants):
every face (chat, NATS, HTTP), grants changed by reload and by restart, and ``--watch``."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
from test_reload import break_import, edit_manifest, set_version, write_reloadable

from botproc import BotProcess, run_bot, run_rosey
from httpface import HTTP_ON, HttpApi


async def until_reply(bot: BotProcess, text: str, wanted: str, timeout: float = 30) -> str:
    """Ask ``text`` until the reply contains ``wanted`` (a reload is under way)."""
    deadline = time.monotonic() + timeout
    while True:
        reply = await bot.chat(text)
        if wanted in reply or time.monotonic() > deadline:
            return reply
        await asyncio.sleep(0.1)


async def test_reload_from_every_face_and_grants_follow_the_manifest(tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    asker = write_reloadable(
        plugins, "asker", commands=["ask", "whoami"], permissions=["plugins.call:helper"]
    )
    write_reloadable(plugins, "helper", commands=[])
    config = HTTP_ON + 'admins: ["test:boss"]\n'
    async with run_bot(tmp_path, plugins_dirs=[plugins], config=config) as bot:
        assert (await bot.chat("!ask helper")).endswith(" v1")
        # The grant goes: reload over NATS; status no longer lists it, the broker refuses.
        edit_manifest(asker, permissions=[])
        set_version(asker, "2")
        reply = await bot.manage("reload", {"plugin": "asker"}, timeout=60)
        assert reply["ok"], reply
        assert reply["result"]["permissions"] == []
        assert (await bot.chat("!whoami")).endswith(" v2")
        refused = await bot.chat("!ask helper")
        assert "failed" in refused
        assert "v1" not in refused
        # Back by restart (which re-reads the manifest too).
        edit_manifest(asker, permissions=["plugins.call:helper"])
        reply = await bot.manage("restart", {"plugin": "asker"}, timeout=60)
        assert reply["ok"]
        assert reply["result"]["permissions"] == ["plugins.call:helper"]
        assert (await bot.chat("!ask helper")).endswith(" v1")
        # A broken save: rolled back on the HTTP face (409), the old instance answers on.
        break_import(asker, "half-saved")
        async with aiohttp.ClientSession() as session:
            status, body = await HttpApi(bot, session).post("/api/plugins/asker/reload")
        assert status == 409, body
        assert body["error"]["code"] == "rolled_back"
        assert "half-saved" in body["error"]["message"]
        assert (await bot.chat("!whoami")).endswith(" v2")
        # From chat, by an admin.
        set_version(write_reloadable(plugins, "asker", commands=["ask", "whoami"]), "3")
        answer = await bot.chat("!plugin reload asker", user="boss")
        assert "asker" in answer, answer
        assert (await bot.chat("!whoami")).endswith(" v3")
        status_reply = await bot.manage("status", {"plugin": "asker"})
        assert status_reply["result"]["crash_count"] == 0
        # From the CLI: a rolled-back reload exits 1 with the reason and its code.
        break_import(asker, "typo in line 1")
        cli = ("plugin", "reload", "asker", "--state-dir", str(bot.state_dir))
        code, out, err = await run_rosey(*cli)
        assert code == 1, (out, err)
        assert "typo in line 1" in out + err
        assert "rolled_back" in out + err
        set_version(write_reloadable(plugins, "asker", commands=["ask", "whoami"]), "4")
        code, out, err = await run_rosey(*cli)
        assert code == 0, (out, err)
        assert (await bot.chat("!whoami")).endswith(" v4")


async def test_watch_reloads_on_save_rolls_back_a_broken_one_and_takes_the_next(
    tmp_path: Path, bot_privilege: str
) -> None:
    plugins = tmp_path / "plugins"
    folder = write_reloadable(plugins, "author", commands=["whoami", "count"])
    async with run_bot(
        tmp_path,
        plugins_dirs=[plugins],
        extra_args=["--watch"],
        unprivileged=bot_privilege == "unprivileged",
    ) as bot:
        await bot.wait_for_log("watch: reloading plugins when their files change", timeout=10)
        assert (await bot.chat("!whoami")).endswith(" v1")
        assert await bot.chat("!count") == "1"
        set_version(folder, "2")
        assert (await until_reply(bot, "!whoami", " v2")).endswith(" v2")
        assert await bot.chat("!count") == "2"  # its data folder survived
        module = folder / "reloadable.py"
        good = module.read_text()
        module.write_text(good + "\ndef broken(:\n")
        await bot.wait_for_log("reload of plugin 'author' rolled back (manifest)", timeout=30)
        assert (await bot.chat("!whoami")).endswith(" v2")
        module.write_text(good.replace('VERSION = "2"', 'VERSION = "3"'))
        assert (await until_reply(bot, "!whoami", " v3")).endswith(" v3")
