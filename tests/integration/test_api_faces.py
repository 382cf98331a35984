"""Every management action through every face (chat, NATS, CLI) against one running bot.

The bot is a real ``rosey run`` with real plugins: dice and eightball from ``plugins/``, and the
fixtures api_base and api_dependent (which depends on api_base). The admins are ``test:boss``;
``tester`` is not one. One bot serves the whole module; each test first puts every plugin back
to running (``restore``), so the tests do not depend on each other's order.
"""

from __future__ import annotations

import asyncio
import json
import os
import pty
import re
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
from nats.aio.msg import Msg

from botproc import EXAMPLE_PLUGINS, FIXTURE_PLUGINS, BotProcess, run_bot, run_rosey
from helpers import eventually, wait_gone
from rosey.api.actions import ACTIONS

pytestmark = pytest.mark.asyncio(loop_scope="module")

PLUGINS = ("api_base", "api_dependent", "dice", "eightball")
ADMIN, USER = "boss", "tester"
CONFIG = "admins: ['test:boss']\n"
FACES = ("chat", "nats", "cli")
NUMBERED = re.compile(r"^\[(\d+)/(\d+)\] ")
CODE = re.compile(r"\((not_found|invalid_state|dependency|forbidden|bad_request|internal)\)$")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def bot(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BotProcess]:
    tmp = tmp_path_factory.mktemp("api_faces")
    dirs = [
        EXAMPLE_PLUGINS / "dice",
        EXAMPLE_PLUGINS / "eightball",
        FIXTURE_PLUGINS / "api_base",
        FIXTURE_PLUGINS / "api_dependent",
    ]
    async with run_bot(tmp, plugins_dirs=dirs, config=CONFIG) as running:
        children = running.descendants()
        yield running
        assert await running.terminate() == 0, "\n".join(running.log[-30:])
    assert await wait_gone(children, timeout=10) == []


# -- talking to the bot through each face ---------------------------------------------------------


@dataclass
class Outcome:
    """What a face answered: success, the API error code, and the text a person would read."""

    ok: bool
    code: str | None
    text: str
    exit_code: int | None = None


async def chat(bot: BotProcess, text: str, *, user: str = ADMIN, timeout: float = 30) -> list[str]:
    """Say ``text`` on the test platform; every reply message (several when numbered)."""
    assert bot.nc is not None
    message_id = f"api-{uuid.uuid4().hex}"
    replies: asyncio.Queue[str] = asyncio.Queue()

    async def on_send(msg: Msg) -> None:
        body = json.loads(msg.data)
        if body.get("in_reply_to") == message_id:
            await replies.put(str(body["text"]))

    sub = await bot.nc.subscribe("rosey.platform.test.send", cb=on_send)
    try:
        await bot.nc.flush()
        message = {
            "id": message_id,
            "platform": "test",
            "channel": "room",
            "user": {"username": user, "rank": 0},
            "text": text,
            "timestamp": time.time(),
        }
        await bot.nc.publish("rosey.events.message", json.dumps(message).encode())
        got = []
        async with asyncio.timeout(timeout):
            got.append(await replies.get())
            numbered = NUMBERED.match(got[0])
            total = int(numbered.group(2)) if numbered else 1
            while len(got) < total:
                got.append(await replies.get())
        return got
    finally:
        await sub.unsubscribe()


async def cli(bot: BotProcess, *args: str, timeout: float = 60) -> tuple[int, str, str]:
    """Run ``rosey plugin ARGS --state-dir <the bot's>``: exit code, stdout, stderr."""
    return await run_rosey("plugin", *args, "--state-dir", str(bot.state_dir), timeout=timeout)


async def via(face: str, bot: BotProcess, action: str, plugin: str | None = None) -> Outcome:
    """Run one action through ``face`` as an admin; ``plugin`` is its first positional word."""
    if face == "chat":
        text = "\n".join(await chat(bot, f"!plugin {action} {plugin or ''}".strip()))
        error = CODE.search(text)
        return Outcome(error is None, error.group(1) if error else None, text)
    if face == "nats":
        field = ACTIONS[action].positional[0] if plugin is not None else ""
        reply = await bot.manage(action, None if plugin is None else {field: plugin})
        problem = reply.get("error") or {}
        return Outcome(reply["ok"], problem.get("code"), json.dumps(reply))
    args = [action] if plugin is None else [action, plugin]
    code, out, err = await cli(bot, *args)
    error = CODE.search(err)
    assert (code == 0) == (error is None), (code, out, err)
    return Outcome(code == 0, error.group(1) if error else None, out + err, code)


async def status(bot: BotProcess, plugin: str) -> dict[str, Any]:
    reply = await bot.manage("status", {"plugin": plugin})
    assert reply["ok"], reply
    result: dict[str, Any] = reply["result"]
    return result


async def restore(bot: BotProcess) -> None:
    """Every plugin enabled and running again, dependencies first."""
    for name in PLUGINS:
        if (await status(bot, name))["state"] == "disabled":
            assert (await bot.manage("enable", {"plugin": name}))["ok"]
    for name in PLUGINS:
        reply = await bot.manage("start", {"plugin": name})
        assert reply["ok"], reply


# -- every action through every face --------------------------------------------------------------


@pytest.mark.parametrize("face", FACES)
async def test_list(bot: BotProcess, face: str) -> None:
    await restore(bot)
    outcome = await via(face, bot, "list")
    assert outcome.ok, outcome
    for name in PLUGINS:
        if face == "chat":
            assert re.search(
                rf"^{name}: running, enabled, up \S+, restarts \d+$", outcome.text, re.M
            )
        elif face == "cli":
            assert re.search(rf"^{name}\s+running\s+yes\s", outcome.text, re.M), outcome.text
    if face == "nats":
        plugins = json.loads(outcome.text)["result"]["plugins"]
        assert [p["name"] for p in plugins] == sorted(PLUGINS)
        assert all(p["state"] == "running" for p in plugins)


async def test_list_as_text_from_the_cli_is_a_table_without_colour_in_a_pipe(
    bot: BotProcess,
) -> None:
    await restore(bot)
    code, out, err = await cli(bot, "list")
    assert code == 0, err
    header, *rows = out.splitlines()
    assert header.split() == [
        "NAME",
        "STATE",
        "ENABLED",
        "UPTIME",
        "RESTARTS",
        "CRASHES",
        "PID",
        "CPU",
        "MEM",
        "KIND",
    ]
    assert [r.split()[0] for r in rows] == sorted(PLUGINS)
    assert "\x1b[" not in out


@pytest.mark.parametrize("face", FACES)
async def test_status(bot: BotProcess, face: str) -> None:
    await restore(bot)
    outcome = await via(face, bot, "status", "api_base")
    assert outcome.ok, outcome
    if face == "nats":
        result = json.loads(outcome.text)["result"]
        assert result["name"] == "api_base"
        assert result["state"] == "running"
        assert result["dependents"] == ["api_dependent"]
        assert result["limits"]["memory_mb"] == 256
        return
    assert "api_base 1.0.0: running (enabled)" in outcome.text
    assert "needed by: api_dependent" in outcome.text
    assert re.search(
        r"pid \d+ \(forked\): cpu [\d.]+% of 50%, memory [\d.]+ of 256 MB", outcome.text
    )
    assert "limits: memory 256 MB, cpu 50%, 32 processes, 256 open files" in outcome.text


@pytest.mark.parametrize("face", FACES)
async def test_stop_then_start(bot: BotProcess, face: str) -> None:
    await restore(bot)
    stopped = await via(face, bot, "stop", "eightball")
    assert stopped.ok, stopped
    assert (await status(bot, "eightball"))["state"] == "stopped"
    assert "not running" in (await chat(bot, "!8ball will it work?"))[0]
    started = await via(face, bot, "start", "eightball")
    assert started.ok, started
    now = await status(bot, "eightball")
    assert now["state"] == "running"
    assert now["stats"]["running"]
    if face != "nats":
        assert f"start eightball: done, it is running (pid {now['stats']['pid']})" in started.text


@pytest.mark.parametrize("face", FACES)
async def test_stop_stops_the_dependents_first(bot: BotProcess, face: str) -> None:
    await restore(bot)
    outcome = await via(face, bot, "stop", "api_base")
    assert outcome.ok, outcome
    assert (await status(bot, "api_dependent"))["state"] == "stopped"
    assert (await status(bot, "api_base"))["state"] == "stopped"
    if face != "nats":
        assert "its dependents were stopped first: api_dependent" in outcome.text


@pytest.mark.parametrize("face", FACES)
async def test_restart(bot: BotProcess, face: str) -> None:
    await restore(bot)
    before = await status(bot, "dice")
    outcome = await via(face, bot, "restart", "dice")
    assert outcome.ok, outcome
    after = await status(bot, "dice")
    assert after["state"] == "running"
    assert after["restart_count"] == before["restart_count"] + 1
    assert after["stats"]["pid"] != before["stats"]["pid"]
    assert await bot.chat("!roll 1d1", user="ann") == "ann rolled 1d1: 🎲 1"


@pytest.mark.parametrize("face", FACES)
async def test_disable_then_enable(bot: BotProcess, face: str) -> None:
    await restore(bot)
    disabled = await via(face, bot, "disable", "eightball")
    assert disabled.ok, disabled
    assert (await status(bot, "eightball"))["state"] == "disabled"
    refused = await via(face, bot, "start", "eightball")
    assert not refused.ok
    assert refused.code == "invalid_state", refused
    enabled = await via(face, bot, "enable", "eightball")
    assert enabled.ok, enabled
    assert (await status(bot, "eightball"))["state"] == "stopped"
    assert (await via(face, bot, "start", "eightball")).ok
    assert (await status(bot, "eightball"))["state"] == "running"


@pytest.mark.parametrize("face", FACES)
async def test_logs(bot: BotProcess, face: str) -> None:
    await restore(bot)
    marker = f"m{uuid.uuid4().hex[:12]}"
    assert await bot.chat(f"!apibase say {marker}") == "ok"
    outcome = Outcome(False, None, "")

    async def logged() -> bool:  # stderr reaches the log file through the manager's pipe
        nonlocal outcome
        outcome = await via(face, bot, "logs", "api_base")
        assert outcome.ok, outcome
        return f"said {marker}" in outcome.text

    await eventually(logged, timeout=15, what=f"{marker!r} in the log")
    assert "api_base started" in outcome.text


# -- the failure paths -----------------------------------------------------------------------------


@pytest.mark.parametrize("face", FACES)
@pytest.mark.parametrize(
    "action", ["status", "start", "stop", "restart", "enable", "disable", "logs"]
)
async def test_unknown_plugin_is_not_found(bot: BotProcess, face: str, action: str) -> None:
    outcome = await via(face, bot, action, "nosuchplugin")
    assert not outcome.ok
    assert outcome.code == "not_found", outcome
    assert "no plugin named 'nosuchplugin'" in outcome.text
    assert "known plugins: api_base, api_dependent, dice, eightball" in outcome.text
    if face == "cli":
        assert outcome.exit_code == 1


@pytest.mark.parametrize("face", FACES)
async def test_start_of_a_dependent_whose_dependency_is_stopped_is_refused(
    bot: BotProcess, face: str
) -> None:
    await restore(bot)
    assert (await bot.manage("stop", {"plugin": "api_base"}))["ok"]
    outcome = await via(face, bot, "start", "api_dependent")
    assert not outcome.ok
    assert outcome.code == "dependency", outcome
    assert "needs 'api_base' running first, but it is stopped" in outcome.text
    assert (await status(bot, "api_dependent"))["state"] == "stopped"
    if face == "cli":
        assert outcome.exit_code == 1


@pytest.mark.parametrize(
    ("command", "plugin_state_after"),
    [
        ("stop eightball", "running"),
        ("disable eightball", "running"),
        ("restart eightball", "running"),
        ("start eightball", "running"),
        ("enable eightball", "running"),
        ("logs eightball", "running"),
    ],
)
async def test_non_admin_is_refused_in_chat_and_nothing_happens(
    bot: BotProcess, command: str, plugin_state_after: str
) -> None:
    await restore(bot)
    before = await status(bot, "eightball")
    replies = await chat(bot, f"!plugin {command}", user=USER)
    assert len(replies) == 1
    assert "test:tester is not allowed to" in replies[0]
    assert replies[0].endswith("(only admins may); not done (forbidden)")
    after = await status(bot, "eightball")
    assert after["state"] == plugin_state_after
    assert after["stats"]["pid"] == before["stats"]["pid"]
    assert after["restart_count"] == before["restart_count"]
    await bot.wait_for_log(
        f"refused: test:tester (rank 0) is not an admin and tried: !plugin {command}", 5
    )


async def test_non_admin_may_list_and_read_status_in_chat(bot: BotProcess) -> None:
    await restore(bot)
    assert "dice: running" in (await chat(bot, "!plugin list", user=USER))[0]
    assert "dice 1.0.0: running" in (await chat(bot, "!plugin status dice", user=USER))[0]


@pytest.mark.parametrize("text", ["!plugin", "!plugin help", "!plugin --help"])
async def test_chat_usage(bot: BotProcess, text: str) -> None:
    replies = await chat(bot, text, user=USER)
    usage = "\n".join(NUMBERED.sub("", r) for r in replies)
    assert usage.startswith("usage: !plugin ACTION [NAME] ...")
    for line in (
        "list",
        "status NAME",
        "start NAME",
        "stop NAME",
        "restart NAME",
        "enable NAME",
        "disable NAME",
        "logs NAME [N]",
    ):
        assert f"  {line} " in usage
    assert all(len(r) <= 400 for r in replies)


async def test_chat_help_for_one_action_and_wrong_words(bot: BotProcess) -> None:
    helped = "\n".join(await chat(bot, "!plugin help start"))
    assert helped.startswith("usage: !plugin start NAME\nStart a plugin and wait until it is ready")
    assert (await chat(bot, "!plugin start")) == ["usage: !plugin start NAME"]
    assert (await chat(bot, "!plugin stop a b")) == ["usage: !plugin stop NAME"]
    unknown = (await chat(bot, "!plugin frobnicate dice"))[0]
    assert unknown.startswith("!plugin: unknown action 'frobnicate'; actions: list, status,")
    assert "(bad_request)" in unknown
    bad = (await chat(bot, "!plugin logs dice many"))[0]
    assert bad.startswith("!plugin logs: field 'lines': input should be a valid integer")


async def test_long_chat_output_is_split_into_numbered_messages(bot: BotProcess) -> None:
    await restore(bot)
    words = " ".join(f"line{i:03d}-{'x' * 30}" for i in range(40))
    assert await bot.chat(f"!apibase say {words}") == "ok"
    replies: list[str] = []

    async def logged() -> bool:
        nonlocal replies
        replies = await chat(bot, "!plugin logs api_base 40")
        return any("line039" in r for r in replies)

    await eventually(logged, timeout=15, what="line039 in '!plugin logs api_base 40'")
    assert len(replies) > 1
    assert all(len(r) <= 400 and len(r.splitlines()) <= 15 for r in replies)
    assert [NUMBERED.match(r).group(1) for r in replies] == [  # type: ignore[union-attr]
        str(i) for i in range(1, len(replies) + 1)
    ]
    text = "\n".join(replies)
    assert "(the last 20 of 40 lines; 20 more with 'rosey plugin logs api_base -n 40')" in text
    assert text.index("line020") < text.index("line039")
    assert "line019" not in text


# -- NATS: malformed requests get an envelope, never a timeout ----------------------------------


@pytest.mark.parametrize(
    ("action", "data", "needle"),
    [
        ("status", b"{not json", "body is not UTF-8 JSON"),
        ("status", b"\xff\xfe", "body is not UTF-8 JSON"),
        ("status", b"[1, 2]", "the body must be a JSON object, got list"),
        ("status", b'{"plugin": 5}', "field 'plugin': input should be a valid string (got 5)"),
        ("status", b"{}", "field 'plugin' is required"),
        ("start", b'{"plugin": ""}', "field 'plugin': string should have at least 1 character"),
        (
            "logs",
            b'{"plugin": "dice", "lines": "9"}',
            "field 'lines': input should be a valid integer",
        ),
        (
            "logs",
            b'{"plugin": "dice", "lines": 0}',
            "field 'lines': input should be greater than or equal to 1",
        ),
        ("logs", b'{"plugin": "dice", "cursor": "x"}', "field 'cursor'"),
        (
            "stop",
            b'{"plugin": "dice", "force": true}',
            "field 'force' is not known to stop; fields: plugin",
        ),
        ("list", b'{"plugin": "dice"}', "field 'plugin' is not known to list"),
        (
            "frobnicate",
            b"{}",
            "unknown action 'frobnicate'; actions: list, status, start, stop, restart, enable, "
            "disable, logs, ",
        ),
        ("events", b"", "unknown action 'events'"),
    ],
)
async def test_bad_requests_get_a_bad_request_envelope(
    bot: BotProcess, action: str, data: bytes, needle: str
) -> None:
    assert bot.nc is not None
    msg = await bot.nc.request(f"rosey.manager.{action}", data, timeout=10)
    reply = json.loads(msg.data)
    assert reply["ok"] is False
    assert reply["error"]["code"] == "bad_request"
    assert needle in reply["error"]["message"]
    assert (await status(bot, "dice"))["state"] == "running"


async def test_logs_cursor_returns_only_what_came_after(bot: BotProcess) -> None:
    await restore(bot)
    first = await bot.manage("logs", {"plugin": "api_base", "lines": 5})
    assert first["ok"], first
    cursor = first["result"]["cursor"]
    marker = f"c{uuid.uuid4().hex[:12]}"
    assert await bot.chat(f"!apibase say {marker}-1 {marker}-2") == "ok"
    got: list[str] = []

    async def read_on() -> bool:  # one line per read, each read from the cursor the last gave
        nonlocal cursor
        reply = await bot.manage("logs", {"plugin": "api_base", "lines": 1, "cursor": cursor})
        assert reply["ok"], reply
        assert len(reply["result"]["lines"]) <= 1
        got.extend(reply["result"]["lines"])
        cursor = reply["result"]["cursor"]
        return len(got) >= 2

    await eventually(read_on, timeout=15, what="two lines after the cursor")
    assert [line.rsplit(" ", 1)[-1] for line in got] == [f"{marker}-1", f"{marker}-2"]
    again = await bot.manage("logs", {"plugin": "api_base", "cursor": cursor})
    assert again["result"]["lines"] == []


# -- CLI specifics ---------------------------------------------------------------------------


async def test_cli_logs_follow_prints_new_lines_until_interrupted(bot: BotProcess) -> None:
    await restore(bot)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROSEY_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "rosey.cli",
        "plugin",
        "logs",
        "api_base",
        "-n",
        "1",
        "-f",
        "--state-dir",
        str(bot.state_dir),
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        first = await asyncio.wait_for(proc.stdout.readline(), 15)
        assert first.strip(), "the last line of the log comes first"
        marker = f"f{uuid.uuid4().hex[:12]}"
        assert await bot.chat(f"!apibase say {marker}") == "ok"
        async with asyncio.timeout(15):
            while f"said {marker}" not in (line := (await proc.stdout.readline()).decode()):
                assert line, "the follower ended early"
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(10):
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["logs", "dice", "-n", "0"], "field 'lines': input should be greater than or equal to 1"),
        (["logs", "dice", "-n", "many"], "field 'lines': input should be a valid integer"),
        (["start"], "which plugin? give NAME ... or 'all'"),
        (["frobnicate", "dice"], "invalid choice: 'frobnicate'"),
    ],
)
async def test_cli_usage_errors_exit_2(bot: BotProcess, args: list[str], needle: str) -> None:
    code, out, err = await cli(bot, *args)
    assert code == 2, (out, err)
    assert needle in err


@pytest.mark.parametrize(("args", "code"), [(["status", "dice"], 0), (["stop", "nope"], 1)])
async def test_cli_json_prints_the_envelope(bot: BotProcess, args: list[str], code: int) -> None:
    await restore(bot)
    exit_code, out, err = await cli(bot, *args, "--json")
    assert exit_code == code, err
    reply = json.loads(out)
    assert reply["ok"] is (code == 0)
    if code == 0:
        assert reply["result"]["name"] == "dice"
    else:
        assert reply["error"]["code"] == "not_found"


def read_all(fd: int) -> bytes:
    """What a finished process wrote to a pty (Linux: EIO once drained and closed)."""
    data = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            return data
        if not chunk:
            return data
        data += chunk


@pytest.mark.parametrize(("no_color", "coloured"), [("", True), ("1", False)])
async def test_cli_colours_a_terminal_unless_no_color(
    bot: BotProcess, no_color: str, coloured: bool
) -> None:
    await restore(bot)
    primary, secondary = pty.openpty()
    try:
        try:
            code, _, err = await run_rosey(
                *("plugin", "status", "dice", "--state-dir", str(bot.state_dir)),
                env={"NO_COLOR": no_color, "TERM": "xterm"},
                stdout=secondary,
                timeout=30,
            )
        finally:
            os.close(secondary)
        assert code == 0, err
        out = await asyncio.to_thread(read_all, primary)
    finally:
        os.close(primary)
    assert ("\x1b[32mrunning\x1b[0m" in out.decode()) is coloured, out
    assert ("\x1b[" in out.decode()) is coloured


@pytest.mark.parametrize("face", ["chat", "cli"])
async def test_status_says_why_a_plugin_is_not_running(bot: BotProcess, face: str) -> None:
    await restore(bot)
    assert (await bot.manage("disable", {"plugin": "eightball"}))["ok"]
    outcome = await via(face, bot, "status", "eightball")
    assert "eightball 1.0.0: disabled (disabled)" in outcome.text
    assert re.search(r"^\s*why: \S", outcome.text, re.M), outcome.text
    assert "not running" in outcome.text


@pytest.mark.parametrize("face", FACES)
async def test_help(bot: BotProcess, face: str) -> None:
    outcome = await via(face, bot, "help", "restart")
    assert outcome.ok, outcome
    if face == "nats":
        (described,) = json.loads(outcome.text)["result"]["actions"]
        assert described["name"] == "restart"
        assert described["usage"] == "restart NAME"
        assert described["permission"] == "admin"
        assert described["fields"] == ["plugin"]
    else:
        assert "restart NAME" in outcome.text
        assert "Stop a plugin, then start it again and wait until it is ready." in outcome.text
