"""``rosey top`` (issue 16, item 6) in a real terminal: tmux runs it against a real bot.

tmux gives what a person sees (``capture-pane``: the screen as text) and types (``send-keys``),
and keeps the pane after the program ends so its exit status can be read. Each test has its own
tmux server (its own socket in ``tmp_path``), killed at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from botproc import EXAMPLE_PLUGINS, FIXTURE_PLUGINS, BotProcess, run_bot
from helpers import eventually
from rosey.api.top import TopModel, layout


class Terminal:
    """One tmux server with one 120x30 window running a command."""

    def __init__(self, socket: Path, status_file: Path) -> None:
        self.socket = socket
        self.status_file = status_file

    async def tmux(self, *args: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            "tmux",
            "-S",
            str(self.socket),
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(10):
            out, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        return out.decode()

    async def screen(self) -> str:
        return await self.tmux("capture-pane", "-p", "-t", "top")

    async def keys(self, *keys: str) -> None:
        await self.tmux("send-keys", "-t", "top", *keys)

    async def exit_status(self) -> int | None:
        """The command's exit status once it ended (written by the pane's shell: tmux's own
        ``pane_dead_status`` was seen staying empty under load)."""
        try:
            return int(self.status_file.read_text())
        except (OSError, ValueError):
            return None

    async def wait_screen(self, needle: str, timeout: float = 15) -> str:
        text = ""

        async def shown() -> bool:
            nonlocal text
            text = await self.screen()
            return needle in text

        try:
            await eventually(shown, timeout=timeout, what=f"{needle!r} on the screen")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the screen:\n{text}") from None
        return text


@contextlib.asynccontextmanager
async def terminal(tmp_path: Path, command: list[str]) -> AsyncIterator[Terminal]:
    term = Terminal(tmp_path / "tmux.sock", tmp_path / "exit-status")
    path = " ".join(f"{k}={shlex.quote(v)}" for k, v in os.environ.items() if k == "PATH")
    # The shell stays to write the exit status; its trap (reset in the child) keeps a Ctrl-C
    # meant for rosey top from ending the shell first.
    shell = (
        f"trap : INT; env -u ROSEY_NATS_URL -u ROSEY_STATE_DIR TERM=xterm-256color {path} "
        f"{shlex.join(command)}; echo $? > {shlex.quote(str(term.status_file))}.tmp && "
        f"mv {shlex.quote(str(term.status_file))}.tmp {shlex.quote(str(term.status_file))}"
    )
    await term.tmux(
        "-f", "/dev/null", "new-session", "-d", "-s", "top", "-x", "120", "-y", "30", shell
    )
    try:
        await term.tmux("set-option", "-t", "top", "remain-on-exit", "on")
        yield term
    finally:
        with contextlib.suppress(AssertionError, TimeoutError):
            await term.tmux("kill-server")


def row(screen: str, name: str) -> list[str]:
    """The cells of a plugin's row (NAME KIND STATE PID CPU% MEM CMD/S ERRORS RESTARTS UP)."""
    for line in screen.splitlines():
        cells = line.split()
        if cells and cells[0] == name:
            return cells
    raise AssertionError(f"no row for {name} on the screen:\n{screen}")


def top_command(bot: BotProcess) -> list[str]:
    return [
        sys.executable,
        "-m",
        "rosey.cli",
        "top",
        "--state-dir",
        str(bot.state_dir),
        "--interval",
        "0.3",
    ]


async def restart_count(bot: BotProcess, name: str) -> int:
    reply = await bot.manage("status", {"plugin": name})
    return int(reply["result"]["restart_count"])


async def test_top_shows_the_plugins_restarts_the_selected_one_and_quits(tmp_path: Path) -> None:
    plugins = [EXAMPLE_PLUGINS / "dice", FIXTURE_PLUGINS / "crash_on_command"]
    async with (
        run_bot(tmp_path, plugins_dirs=plugins) as bot,
        terminal(tmp_path, top_command(bot)) as term,
    ):
        screen = await term.wait_screen("dice")
        assert "crash_on_command" in screen
        assert "CMD/S" in screen
        assert "running" in screen

        # Commands and their errors are counted from the router's result/error events.
        for _ in range(3):
            assert (await bot.chat("!roll 1d6")).strip()

        async def counted() -> bool:  # 3 commands in the 10 s window: 0.3 a second
            return row(await term.screen(), "dice")[6] == "0.3"

        await eventually(counted, timeout=8, what="dice's CMD/S at 0.3")

        # The rows are sorted: crash_on_command first, then dice. Select dice, restart it.
        before = await restart_count(bot, "dice")
        await term.keys("Down")
        await term.keys("r")

        async def restarted() -> bool:
            return await restart_count(bot, "dice") == before + 1

        await eventually(restarted, timeout=20, what="dice restarted from rosey top")
        await term.wait_screen("restart dice: running")

        # A stop needs a confirmation: anything but y cancels it.
        await term.keys("s")
        await term.wait_screen("stop dice? y to confirm")
        await term.keys("n")
        await term.wait_screen("stop of dice cancelled")
        assert (await bot.manage("status", {"plugin": "dice"}))["result"]["state"] == "running"
        await term.keys("s")
        await term.wait_screen("stop dice? y to confirm")
        await term.keys("y")
        await term.wait_screen("stop dice: stopped")

        await term.keys("q")

        async def ended() -> bool:
            return await term.exit_status() is not None

        await eventually(ended, timeout=10, what="rosey top ended after q")
        assert await term.exit_status() == 0
        screen = await term.screen()
        assert "CMD/S" not in screen, "the terminal is restored (the alternate screen is gone)"


async def test_ctrl_c_quits_with_0_and_no_bot_is_exit_3(tmp_path: Path) -> None:
    async with (
        run_bot(tmp_path, plugins_dirs=[EXAMPLE_PLUGINS / "dice"]) as bot,
        terminal(tmp_path, top_command(bot)) as term,
    ):
        await term.wait_screen("dice")
        await term.keys("C-c")

        async def ended() -> bool:
            return await term.exit_status() is not None

        await eventually(ended, timeout=10, what="rosey top ended after Ctrl-C")
        assert await term.exit_status() == 0
    nobody = tmp_path / "nobody"
    nobody.mkdir()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "rosey.cli",
        "top",
        "--state-dir",
        str(nobody),
        env={k: v for k, v in os.environ.items() if not k.startswith("ROSEY_")},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(30):
        _, err = await proc.communicate()
    assert proc.returncode == 3
    assert b"no running bot found" in err


def test_the_model_counts_rates_and_errors_and_keeps_the_selection() -> None:
    model = TopModel()
    model.update(
        [
            {
                "name": "zeta",
                "state": "crashed",
                "last_error": "crashed (exit 3)\x1b[2J",
                "stats": {},
            },
            {
                "name": "alpha",
                "state": "running",
                "restart_count": 2,
                "uptime_seconds": 3725,
                "stats": {"running": True, "pid": 42, "cpu_percent": 1.25, "memory_mb": 20.5},
            },
        ]
    )
    assert model.selected_name == "alpha"
    for t in (100.0, 101.0, 102.0, 103.0):
        model.command("alpha", ok=t != 103.0, now=t)
    model.command("zeta", ok=False, now=50.0)
    rows = {row[0]: row for row in model.rows(now=105.0)}
    assert rows["alpha"] == (
        "alpha",
        "plugin",
        "running",
        "42",
        "1.2",
        "20.5",
        "0.4",
        "1",
        "2",
        "1h02m",
    )
    assert rows["zeta"][3:9] == ("-", "-", "-", "0.0", "1", "0")
    model.move(1)
    assert model.selected_name == "zeta"
    assert model.detail() == "crashed (exit 3)"  # escapes never reach the screen
    model.update([{"name": "zeta", "state": "running", "stats": {}}])
    assert model.selected_name == "zeta"
    header, lines = layout(model.rows(now=105.0))
    assert header.startswith("NAME  KIND    STATE")
    assert lines[0].startswith("zeta  plugin  running")
