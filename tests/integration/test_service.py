"""``rosey run`` as a service (issue 16, item 7): readiness, clean stop, journald, quiet console,
and the shipped systemd unit and container recipe.

The notify protocol is tested against a real ``rosey run`` with a real AF_UNIX datagram socket
as ``$NOTIFY_SOCKET``, the way systemd listens. The unit is checked by ``systemd-analyze verify``
and by its keys; the Containerfile by its instructions (no container engine on this machine: it
cannot be built here).
"""

from __future__ import annotations

import asyncio
import configparser
import contextlib
import json
import os
import pty
import re
import shutil
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import pytest

from botproc import EXAMPLE_PLUGINS, REPO, run_bot
from helpers import wait_gone

UNIT = REPO / "deploy" / "rosey.service"
CONTAINERFILE = REPO / "deploy" / "Containerfile"


class Listener:
    """What systemd does for ``Type=notify``: a datagram socket, each datagram KEY=VALUE lines."""

    def __init__(self, sock: socket.socket, address: str) -> None:
        self.sock = sock
        self.address = address
        self.received: list[dict[str, str]] = []

    async def until(self, key: str, timeout: float) -> dict[str, str]:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            while True:
                for fields in self.received:
                    if key in fields:
                        return fields
                data = await loop.sock_recv(self.sock, 4096)
                self.received.append(
                    dict(line.split("=", 1) for line in data.decode().splitlines())
                )


@contextlib.asynccontextmanager
async def listening(tmp_path: Path, abstract: bool) -> AsyncIterator[Listener]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.setblocking(False)
    path = tmp_path / "notify.sock"
    path.unlink(missing_ok=True)
    try:
        if abstract:
            name = f"rosey-test-{os.getpid()}-{id(sock)}"
            sock.bind("\0" + name)
            address = "@" + name
        else:
            sock.bind(str(path))
            os.chmod(path, 0o777)  # the unprivileged bot must be able to send
            address = str(path)
        yield Listener(sock, address)
    finally:
        sock.close()
        path.unlink(missing_ok=True)


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
async def test_ready_is_sent_once_up_and_stopping_on_sigterm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, abstract: bool, bot_privilege: str
) -> None:
    async with listening(tmp_path, abstract) as listener:
        monkeypatch.setenv("NOTIFY_SOCKET", listener.address)
        async with run_bot(
            tmp_path,
            plugins_dirs=[EXAMPLE_PLUGINS / "dice"],
            ready=False,
            unprivileged=(bot_privilege == "unprivileged"),
        ) as bot:
            ready = await listener.until("READY", timeout=60)
            assert ready["READY"] == "1"
            assert ready["STATUS"] == "up: 1 plugin(s)"
            # Ready means reachable: runtime.json is there and the bot answers.
            await bot.connect()
            reply = await bot.manage("list")
            assert [p["state"] for p in reply["result"]["plugins"]] == ["running"]
            # No child of the bot (broker, warden, plugins) may speak for the service.
            children = bot.descendants()
            assert children
            for pid in children:
                with contextlib.suppress(psutil.Error):
                    assert "NOTIFY_SOCKET" not in psutil.Process(pid).environ(), pid
            assert await bot.terminate() == 0
            assert (await listener.until("STOPPING", timeout=5))["STOPPING"] == "1"
            assert await wait_gone(children, timeout=10) == []


def test_without_notify_socket_nothing_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    from rosey.sandbox import sdnotify

    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.setattr(sdnotify, "_address", None)
    monkeypatch.setattr(sdnotify, "_read", False)
    assert sdnotify.notify(READY="1") is False
    monkeypatch.setenv("NOTIFY_SOCKET", "relative/path")
    monkeypatch.setattr(sdnotify, "_read", False)
    assert sdnotify.notify(READY="1") is False  # not a path or @name: refused, not guessed
    assert "NOTIFY_SOCKET" not in os.environ


# -- the terminal: quiet with the console chat, journald's format under systemd ----------------


async def start_rosey(
    tmp_path: Path, *extra: str, stdin: int, stderr: int, env: dict[str, str]
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "rosey.cli",
        "run",
        "--state-dir",
        str(tmp_path / "state"),
        "--plugins-dir",
        str(EXAMPLE_PLUGINS / "dice"),
        *extra,
        cwd=tmp_path,
        env=env,
        stdin=stdin,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=stderr,
    )


async def run_until_ready(
    tmp_path: Path, *extra: str, env: dict[str, str], console: bool
) -> tuple[int, list[str]]:
    """Start ``rosey run`` (stdin a terminal if ``console``), wait for READY, SIGTERM it; its
    exit code and what it wrote on stderr."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("ROSEY_", "JOURNAL_"))}
    read_end, write_end = os.pipe()
    primary, secondary = pty.openpty() if console else (-1, os.open(os.devnull, os.O_RDONLY))
    async with listening(tmp_path, abstract=False) as listener:
        full_env = {**base, "NOTIFY_SOCKET": listener.address, **env}
        if "JOURNAL_STREAM" in env and env["JOURNAL_STREAM"] == "match":
            info = os.fstat(write_end)
            full_env["JOURNAL_STREAM"] = f"{info.st_dev}:{info.st_ino}"
        proc = await start_rosey(tmp_path, *extra, stdin=secondary, stderr=write_end, env=full_env)
        os.close(write_end)
        os.close(secondary)
        try:
            await listener.until("READY", timeout=60)
            proc.send_signal(signal.SIGTERM)
            async with asyncio.timeout(30):
                code = await proc.wait()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            if primary >= 0:
                os.close(primary)
    with os.fdopen(read_end, "rb") as fh:
        lines = fh.read().decode("utf-8", "replace").splitlines()
    return code, lines


async def test_the_console_chat_is_quiet_and_the_core_log_has_everything(tmp_path: Path) -> None:
    code, lines = await run_until_ready(tmp_path, env={}, console=True)
    assert code == 0
    assert not [line for line in lines if " INFO " in line], lines
    core_log = (tmp_path / "state" / "logs" / "rosey-core.log").read_text()
    assert "INFO    rosey: rosey is up: 1 plugin(s)" in core_log
    assert "INFO    rosey: stopped" in core_log
    assert oct((tmp_path / "state" / "logs" / "rosey-core.log").stat().st_mode & 0o777) == "0o600"

    shutil.rmtree(tmp_path / "state")
    code, lines = await run_until_ready(tmp_path, "--log-level", "INFO", env={}, console=True)
    assert code == 0
    assert any(" INFO    rosey: rosey is up" in line for line in lines), lines


async def test_journald_gets_priorities_and_no_second_timestamp(tmp_path: Path) -> None:
    code, lines = await run_until_ready(
        tmp_path, "--no-console", env={"JOURNAL_STREAM": "match"}, console=False
    )
    assert code == 0
    assert "<6>rosey: rosey is up: 1 plugin(s), management on rosey.manager.*" in lines
    assert all(re.match(r"^<[0-7]>\S+: ", line) for line in lines), lines

    # JOURNAL_STREAM naming another file (inherited, stderr redirected): the usual format.
    shutil.rmtree(tmp_path / "state")
    code, lines = await run_until_ready(
        tmp_path, "--no-console", env={"JOURNAL_STREAM": "1:2"}, console=False
    )
    assert code == 0
    assert any(re.match(r"^\d{4}-\d\d-\d\d .* INFO    rosey: rosey is up", line) for line in lines)


# -- the systemd unit and the container recipe -------------------------------------------------


def unit() -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, comment_prefixes=("#", ";"))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNIT)
    return parser


def test_the_unit_runs_rosey_as_a_notify_service_that_stops_cleanly() -> None:
    service = unit()["Service"]
    assert service["Type"] == "notify"
    assert service["NotifyAccess"] == "main"
    assert service["KillMode"] == "mixed"  # SIGTERM to rosey alone: it stops its plugins in order
    assert service["KillSignal"] == "SIGTERM"
    assert service["User"] != "root"
    assert service["Delegate"] == "yes"
    command = service["ExecStart"].split()
    assert command[1:3] == ["run", "--no-console"]
    assert Path(command[0]).name == "rosey"
    assert "ROSEY_STATE_DIR=/var/lib/rosey" in service["Environment"]
    assert unit()["Install"]["WantedBy"] == "multi-user.target"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
async def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    # verify also checks that ExecStart exists: point it at this checkout's rosey.
    rosey = Path(sys.executable).parent / "rosey"
    assert rosey.exists()
    text = UNIT.read_text().replace("/opt/rosey/.venv/bin/rosey", str(rosey))
    copy = tmp_path / "rosey.service"
    copy.write_text(text)
    proc = await asyncio.create_subprocess_exec(
        "systemd-analyze",
        "verify",
        str(copy),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    # verify exits 0 on unknown values too, printing them: nothing about our file may be said.
    said = [line for line in (out + err).decode().splitlines() if "rosey.service" in line]
    assert proc.returncode == 0, said
    assert said == []


def containerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", CONTAINERFILE.read_text())
    out = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_the_containerfile_runs_rosey_as_a_non_root_user_from_files_that_exist() -> None:
    steps = containerfile()
    assert steps[0][0] == "FROM"
    assert re.match(r"^docker\.io/library/python:3\.11-slim-(bookworm|trixie)$", steps[0][1])
    users = [args for word, args in steps if word == "USER"]
    assert users
    assert users[-1] not in ("root", "0")
    assert [word for word, _ in steps].index("USER") > max(
        i for i, (word, _) in enumerate(steps) if word == "RUN"
    ), "USER comes after the last RUN: the bot never runs as root"
    cmd = json.loads(next(args for word, args in steps if word == "CMD"))
    assert cmd[:3] == ["rosey", "run", "--no-console"]
    assert next(args for word, args in steps if word == "STOPSIGNAL") == "SIGTERM"
    copies = [args.split()[:-1] for word, args in steps if word == "COPY"]
    assert copies
    for sources in copies:
        for source in sources:
            assert (REPO / source).exists(), f"COPY {source}: not in the repository"
    installs = " ".join(args for word, args in steps if word == "RUN")
    assert "--constraint constraints.txt" in installs
