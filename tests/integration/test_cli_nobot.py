"""``rosey plugin ...`` when no bot can be reached: exit 3 with a clear message, quickly."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

import pytest

from botproc import run_rosey
from rosey.bus.server import EmbeddedServer


async def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Exit code and stderr of ``python -m rosey.cli plugin ARGS``."""
    code, _, err = await run_rosey("plugin", *args, cwd=cwd, env=env, timeout=30)
    return code, err


async def free_port() -> int:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port: int = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    return port


async def test_no_runtime_file(tmp_path: Path) -> None:
    code, err = await run_cli("list", cwd=tmp_path)
    assert code == 3
    assert "no running bot found" in err
    assert ".rosey/runtime.json" in err
    assert "rosey run" in err


async def test_state_dir_from_the_environment(tmp_path: Path) -> None:
    code, err = await run_cli("status", "dice", cwd=tmp_path, env={"ROSEY_STATE_DIR": "elsewhere"})
    assert code == 3
    assert "elsewhere/runtime.json" in err


async def test_stale_runtime_file_of_a_dead_bot(tmp_path: Path) -> None:
    dead = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    await dead.wait()
    state = tmp_path / "state"
    state.mkdir()
    (state / "runtime.json").write_text(
        json.dumps(
            {"pid": dead.pid, "nats_url": "nats://127.0.0.1:1", "user": None, "password": None}
        )
    )
    started = time.monotonic()
    code, err = await run_cli("stop", "dice", "--state-dir", str(state), cwd=tmp_path)
    assert code == 3
    assert f"names pid {dead.pid}, which is not running" in err
    assert "stale" in err
    assert time.monotonic() - started < 10


async def test_runtime_file_whose_server_is_gone_fails_within_seconds(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    port = await free_port()
    (state / "runtime.json").write_text(  # a live pid (ours), but nothing listens on the port
        json.dumps(
            {
                "pid": os.getpid(),
                "nats_url": f"nats://127.0.0.1:{port}",
                "user": None,
                "password": None,
            }
        )
    )
    started = time.monotonic()
    code, err = await run_cli("list", "--state-dir", str(state), cwd=tmp_path)
    assert code == 3
    assert f"no running bot could be reached at nats://127.0.0.1:{port}" in err
    assert time.monotonic() - started < 15


async def test_a_broken_runtime_file(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "runtime.json").write_text('{"pid": "one"}')
    code, err = await run_cli("list", "--state-dir", str(state), cwd=tmp_path)
    assert code == 3
    assert "is not a runtime file" in err


@pytest.mark.parametrize("how", ["flag", "env"])
async def test_a_nats_server_without_a_bot(
    tmp_path: Path, nats_server: EmbeddedServer, how: str
) -> None:
    args = ["status", "dice"] + (["--nats-url", nats_server.url] if how == "flag" else [])
    env = {"ROSEY_NATS_URL": nats_server.url} if how == "env" else None
    code, err = await run_cli(*args, cwd=tmp_path, env=env)
    assert code == 3
    assert f"no running bot could be reached at {nats_server.url}" in err
    assert "nobody is listening on rosey.manager.status" in err


async def test_usage_errors_are_exit_2_before_looking_for_a_bot(tmp_path: Path) -> None:
    code, err = await run_cli("logs", "dice", "-n", "-3", cwd=tmp_path)
    assert code == 2
    assert "field 'lines'" in err
    code, err = await run_cli(cwd=tmp_path)
    assert code == 2
