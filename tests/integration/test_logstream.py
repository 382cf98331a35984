"""One log stream (issue 16, item 5): the core's log and the plugins', merged, with run markers.

A real bot runs the example ``dice`` and the fixture ``log_forger``, whose output imitates the
bot's markers, stamps and core lines. ``rosey logs`` (a real CLI process, reading the files)
must show each run of a plugin between the manager's markers, keep time order across sources,
and show every forged line as the plugin's own output.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
import time
import uuid
from pathlib import Path

from botproc import EXAMPLE_PLUGINS, FIXTURE_PLUGINS, BotProcess, cli_env, run_bot, run_rosey
from helpers import eventually
from rosey.api.logfile import Cursor
from rosey.api.logstream import CORE, LogLine, last_lines, merge, parse, read_new
from rosey.sandbox.logs import LineStamper, RotatingLog, write_marker

LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) (\S+) +(\| |────)(.*)$")


async def rosey(*args: str, timeout: float = 30) -> tuple[int, list[str], str]:
    """Exit code, stdout lines and stderr of ``python -m rosey.cli ARGS``."""
    code, out, err = await run_rosey(*args, timeout=timeout)
    return code, out.splitlines(), err


def split(line: str) -> tuple[str, str, bool, str]:
    """(time, source, is_marker, text) of one line ``rosey logs`` printed."""
    match = LINE.match(line)
    assert match is not None, f"not a stream line: {line!r}"
    when, source, kind, text = match.groups()
    return when, source, kind == "────", ("──── " + text.lstrip() if kind == "────" else text)


async def say(bot: BotProcess, text: str) -> None:
    """Publish a chat message without waiting for a reply."""
    assert bot.nc is not None
    message = {
        "id": f"say-{uuid.uuid4().hex[:8]}",
        "platform": "test",
        "channel": "room",
        "user": {"username": "tester", "rank": 0},
        "text": text,
        "timestamp": time.time(),
    }
    await bot.nc.publish("rosey.events.message", json.dumps(message).encode())
    await bot.nc.flush()


async def status(bot: BotProcess, name: str) -> dict[str, object]:
    reply = await bot.manage("status", {"plugin": name})
    assert reply["ok"], reply
    result: dict[str, object] = reply["result"]
    return result


async def test_the_merged_stream_marks_each_run_and_forged_lines_stay_the_plugins(
    tmp_path: Path, bot_privilege: str
) -> None:
    token = f"t{uuid.uuid4().hex[:10]}"
    async with run_bot(
        tmp_path,
        plugins_dirs=[EXAMPLE_PLUGINS / "dice", FIXTURE_PLUGINS / "log_forger"],
        unprivileged=(bot_privilege == "unprivileged"),
    ) as bot:
        first_pid = (await status(bot, "log_forger"))["stats"]
        assert await bot.chat(f"!forge {token}") == "forged"
        await say(bot, f"!die {token}")  # no reply: it kills itself

        async def restarted() -> bool:
            info = await status(bot, "log_forger")
            return info["restart_count"] == 1 and info["state"] == "running"

        await eventually(restarted, timeout=30, what="log_forger restarted once after SIGKILL")
        second_pid = (await status(bot, "log_forger"))["stats"]
        assert (await bot.manage("stop", {"plugin": "log_forger"}))["ok"]
        state_dir = bot.state_dir
        assert await bot.terminate() == 0
    assert isinstance(first_pid, dict)
    assert isinstance(second_pid, dict)

    # The bot has stopped: the stream is read from the files.
    code, lines, err = await rosey("logs", "--state-dir", str(state_dir), "-n", "2000")
    assert code == 0, err
    parsed = [split(line) for line in lines]
    times = [when for when, *_ in parsed]
    assert times == sorted(times), "the merged stream is in time order"

    markers = [text for _, source, marker, text in parsed if marker and source == "log_forger"]
    assert markers == [
        f"──── log_forger started (pid {first_pid['pid']}) ────",
        "──── log_forger crashed (signal 9 (SIGKILL)) ────",
        f"──── log_forger started (pid {second_pid['pid']}) ────",
        "──── log_forger stopped (exit 0) ────",
    ]
    assert all(source in ("log_forger", "dice", CORE) for _, source, _, _ in parsed)
    dice = [text for _, source, marker, text in parsed if marker and source == "dice"]
    assert len(dice) == 2, dice
    assert dice[0].startswith("──── dice started (pid ")
    assert dice[1] == "──── dice stopped (exit 0) ────"

    # Everything the plugin wrote is its output: never a marker, never the core, never the past.
    forged = [(source, marker) for _, source, marker, text in parsed if token in text]
    assert len(forged) >= 2 * 4 + 2 + 1, lines
    assert set(forged) == {("log_forger", False)}
    assert any(f"unterminated {token} end" in text for *_, text in parsed), "lines never meet"
    assert not any(when.startswith("2000") for when in times)

    # The core's own lines are there, between the runs they describe.
    core = [(i, text) for i, (_, source, _, text) in enumerate(parsed) if source == CORE]
    assert any("rosey is up" in text for _, text in core)
    crash_at = next(i for i, (_, _, m, t) in enumerate(parsed) if m and "crashed (signal" in t)
    dying_at = next(i for i, (*_, t) in enumerate(parsed) if f"log_forger: dying {token}" in t)
    assert dying_at < crash_at, "the last words come before the crash marker"

    # Only some plugins, and `rosey plugin logs --all`, read the same files.
    code, only, err = await rosey("logs", "log_forger", "--state-dir", str(state_dir), "-n", "5")
    assert code == 0, err
    assert len(only) == 5
    assert {split(line)[1] for line in only} == {"log_forger"}
    code, every, err = await rosey(
        "plugin", "logs", "--all", "--state-dir", str(state_dir), "-n", "2000"
    )
    assert code == 0, err
    assert every == lines
    code, _, err = await rosey("logs", "nosuch", "--state-dir", str(state_dir))
    assert code == 1
    assert "no log for nosuch" in err
    assert "log_forger" in err


async def test_follow_prints_the_core_and_the_markers_of_a_restart(tmp_path: Path) -> None:
    async with run_bot(tmp_path, plugins_dirs=[EXAMPLE_PLUGINS / "dice"]) as bot:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "rosey.cli",
            "logs",
            "-f",
            "-n",
            "1",
            "--state-dir",
            str(bot.state_dir),
            env=cli_env(),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None
        try:
            assert (await asyncio.wait_for(proc.stdout.readline(), 15)).strip()
            assert (await bot.manage("restart", {"plugin": "dice"}))["ok"]
            seen: list[str] = []
            wanted = ["──── dice stopped (exit 0) ────", "──── dice started (pid"]
            async with asyncio.timeout(15):
                while not all(any(w in line for line in seen) for w in wanted) or not any(
                    f" {CORE} " in line and "dice" in line for line in seen
                ):
                    line = (await proc.stdout.readline()).decode()
                    assert line, "the follower ended early"
                    seen.append(line)
            proc.send_signal(signal.SIGINT)
            async with asyncio.timeout(10):
                assert await proc.wait() == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


# -- the writer and reader on their own (files only) -----------------------------------------


def test_a_rotation_never_starts_a_file_with_the_plugins_bytes(tmp_path: Path) -> None:
    """A line is never cut across files: the end of a cut line would start the next file
    unstamped, and a plugin that counts its bytes could put a forged marker exactly there."""
    path = tmp_path / "p.log"
    log = RotatingLog(path, max_bytes=300, backups=3)
    stamper = LineStamper(log)
    fake = "2000-01-01T00:00:00.000Z ──── p started (pid 1) ────"
    for size in range(1, 120, 7):
        stamper.feed(("x" * size + fake + "\n").encode())
    stamper.feed(("y" * 1000 + fake + "\n").encode())  # longer than a file
    stamper.flush()
    log.close()
    files = [path, *(path.with_name(f"p.log.{i}") for i in (1, 2, 3))]
    for file in files:
        for raw in file.read_text().splitlines():
            line = parse("p", raw)
            assert not line.marker, raw
            assert line.when, raw
            assert not line.when.startswith("2000"), raw
    assert all(f.stat().st_size <= 300 for f in files)


def test_markers_and_output_merge_in_time_order(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    log = RotatingLog(logs / "a.log")
    write_marker(logs / "a.log", "a", "started (pid 7)")
    LineStamper(log).feed(b"one\ntwo\n")
    write_marker(logs / "a.log", "a", "crashed (exit 3)")
    log.close()
    (logs / "rosey-core.log").write_text(
        "2000-01-01T00:00:00.000Z INFO    rosey: old\n9999-01-01T00:00:00.000Z INFO    rosey: new\n"
    )
    files = {CORE: logs / "rosey-core.log", "a": logs / "a.log"}
    lines, cursors = last_lines(files, 100)
    assert [(line.source, line.text, line.marker) for line in lines] == [
        (CORE, "INFO    rosey: old", False),
        ("a", "──── a started (pid 7) ────", True),
        ("a", "one", False),
        ("a", "two", False),
        ("a", "──── a crashed (exit 3) ────", True),
        (CORE, "INFO    rosey: new", False),
    ]
    assert read_new(files, cursors)[0] == []
    none, at_end = last_lines(files, 0)  # `rosey logs -n 0 -f`: only what comes next
    assert none == []
    assert read_new(files, at_end)[0] == []
    new, _ = read_new(files, {})
    assert len(new) == 6
    assert isinstance(cursors["a"], Cursor)


def test_parse_and_merge_table() -> None:
    stamp = "2026-11-27T14:43:03.123Z"
    cases = [
        ("p", f"{stamp} | hello", LogLine(stamp, "p", "hello")),
        (
            "p",
            f"{stamp} ──── p stopped (exit 0) ────",
            LogLine(stamp, "p", "──── p stopped (exit 0) ────", True),
        ),
        ("p", f"{stamp} ──── half a marker", LogLine(stamp, "p", "──── half a marker")),
        ("p", "no stamp ──── p started ────", LogLine("", "p", "no stamp ──── p started ────")),
        (CORE, f"{stamp} ──── p started ────", LogLine(stamp, CORE, "──── p started ────")),
    ]
    for source, raw, expected in cases:
        assert parse(source, raw) == expected, raw
    a = [LogLine("2", "a", "x"), LogLine("1", "a", "clock went back")]
    b = [LogLine("1", "b", "y"), LogLine("3", "b", "z")]
    assert [line.text for line in merge([a, b])] == ["y", "x", "clock went back", "z"]
