"""The embedded nats-server, real binary: start, serve, reload, stop, die with the bot."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import stat
import sys
import textwrap
from pathlib import Path
from typing import Any

import nats
import nats.errors
import pytest
from nats.aio.client import Client

from helpers import is_alive, wait_gone
from rosey.bus.server import EmbeddedServer
from rosey.errors import BrokerError

DEADLINE = 10.0  # seconds any single wait in these tests may take
USERS = 'authorization { users = [ {user: "rosey", password: "s3cret"} ] }'


async def connect(url: str, **options: Any) -> Any:
    """A nats-py client that fails fast instead of retrying for minutes."""
    return await nats.connect(
        url, connect_timeout=2, max_reconnect_attempts=0, allow_reconnect=False, **options
    )


async def quiet(exc: Exception) -> None:
    """An ``error_cb`` for connects expected to fail (nats-py logs the error otherwise)."""


async def assert_roundtrip(url: str, **options: Any) -> None:
    """A message published on the server comes back to a subscriber on it."""
    nc = await connect(url, **options)
    try:
        received: asyncio.Queue[bytes] = asyncio.Queue()

        async def on_message(msg: Any) -> None:
            received.put_nowait(msg.data)

        await nc.subscribe("rosey.test.ping", cb=on_message)
        await nc.flush()
        await nc.publish("rosey.test.ping", b"hello")
        async with asyncio.timeout(DEADLINE):
            assert await received.get() == b"hello"
    finally:
        await nc.close()


def fake_binary(path: Path, script: str) -> Path:
    """A stand-in for nats-server: a shell script (it ignores the ``-c FILE`` arguments)."""
    path.write_text("#!/bin/sh\n" + textwrap.dedent(script))
    path.chmod(0o755)
    return path


async def test_serves_publish_subscribe(nats_server: EmbeddedServer, nats_url: str) -> None:
    assert nats_url == f"nats://127.0.0.1:{nats_server.port}"
    assert nats_server.pid is not None
    await assert_roundtrip(nats_url)


async def test_jetstream_stores_under_the_given_dir(
    nats_server: EmbeddedServer, tmp_path: Path
) -> None:
    nc = await connect(nats_server.url)
    try:
        js = nc.jetstream()
        kv = await js.create_key_value(bucket="probe")
        await kv.put("answer", b"42")
        assert (await kv.get("answer")).value == b"42"
        assert (await js.account_info()).streams == 1
    finally:
        await nc.close()
    store = tmp_path / "nats" / "jetstream"
    assert any(p.is_file() for p in store.rglob("*")), f"nothing stored under {store}"
    assert stat.S_IMODE(nats_server.config_path.stat().st_mode) == 0o600
    log = nats_server.log_path.read_text()
    assert "Server is ready" in log
    assert re.search(r"Max Memory: +64\.00 MB", log), "max_memory_store not applied"
    assert re.search(r"Max Storage: +1\.00 GB", log), "max_file_store not applied"
    assert f'Store Directory: "{store}"' in log


async def test_stop_leaves_no_process_and_is_idempotent(tmp_path: Path) -> None:
    server = EmbeddedServer(tmp_path)
    await server.start()
    pid = server.pid
    assert pid is not None
    await server.stop()
    await server.stop()
    assert server.pid is None
    assert await wait_gone([pid], DEADLINE) == []
    assert any("Server Exiting" in line for line in server.log_tail())


async def test_context_manager_starts_and_stops(tmp_path: Path) -> None:
    async with EmbeddedServer(tmp_path) as server:
        pid = server.pid
        assert pid is not None
        await assert_roundtrip(server.url)
    assert await wait_gone([pid], DEADLINE) == []


async def test_cancelled_stop_still_ends_the_process(tmp_path: Path) -> None:
    server = EmbeddedServer(tmp_path)
    await server.start()
    pid = server.pid
    assert pid is not None
    stopping = asyncio.create_task(server.stop())
    await asyncio.sleep(0)  # let stop() begin, then cancel it mid-way
    stopping.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopping
    assert server.pid is None
    assert await wait_gone([pid], DEADLINE) == []


async def test_stop_kills_a_server_that_ignores_sigterm(tmp_path: Path) -> None:
    binary = fake_binary(
        tmp_path / "stubborn",
        """\
        trap '' TERM
        echo "[1] [INF] Listening for client connections on 127.0.0.1:4222"
        echo "[1] [INF] Server is ready"
        exec sleep 60
        """,
    )
    server = EmbeddedServer(tmp_path / "store", binary=binary)
    await server.start()
    pid = server.pid
    assert pid is not None
    assert server.url == "nats://127.0.0.1:4222"
    async with asyncio.timeout(DEADLINE):
        await server.stop(timeout=0.2)
    assert await wait_gone([pid], DEADLINE) == []


async def test_missing_binary_raises_broker_error(tmp_path: Path) -> None:
    server = EmbeddedServer(tmp_path, binary=tmp_path / "no-such-nats-server")
    with pytest.raises(BrokerError, match="could not run"):
        await server.start()
    assert server.pid is None


async def test_exit_before_ready_raises_with_the_log_tail(tmp_path: Path) -> None:
    binary = fake_binary(tmp_path / "broken", 'echo "boom: cannot start"\nexit 3\n')
    server = EmbeddedServer(tmp_path / "store", binary=binary)
    with pytest.raises(BrokerError, match="exit 3") as caught:
        await server.start()
    assert "boom: cannot start" in str(caught.value)
    assert server.pid is None


async def test_rejected_config_raises_within_the_deadline(tmp_path: Path) -> None:
    server = EmbeddedServer(tmp_path, ready_timeout=5.0, authorization="authorization { users = [")
    async with asyncio.timeout(server.ready_timeout + 5.0):
        with pytest.raises(BrokerError, match="exited before it was ready") as caught:
            await server.start()
    assert any("error" in line.lower() for line in caught.value.log_tail)
    assert caught.value.log_tail[-1] in str(caught.value)
    assert server.pid is None


async def test_not_ready_within_the_deadline_raises_and_kills(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    binary = fake_binary(
        tmp_path / "silent",
        f"""\
        echo $$ > {pid_file}
        echo "starting, slowly"
        exec sleep 60
        """,
    )
    server = EmbeddedServer(tmp_path / "store", binary=binary, ready_timeout=0.5)
    with pytest.raises(BrokerError, match=r"not ready within 0\.5 s") as caught:
        await server.start()
    assert "starting, slowly" in str(caught.value)
    assert await wait_gone([int(pid_file.read_text())], DEADLINE) == []


async def test_reload_with_a_syntax_error_keeps_the_old_config(nats_server: EmbeddedServer) -> None:
    before = nats_server.config_path.read_text()
    with pytest.raises(BrokerError, match="is not valid"):
        await nats_server.reload("authorization { users = [")
    assert nats_server.config_path.read_text() == before
    assert not nats_server.config_path.with_name("nats-server.conf.new").exists()
    await assert_roundtrip(nats_server.url)


async def test_reload_refused_by_the_server_keeps_the_old_config(
    nats_server: EmbeddedServer,
) -> None:
    """``-t`` accepts a port change, but a running server refuses it: the log tells."""
    before = nats_server.config_path.read_text()
    with pytest.raises(BrokerError, match="refused the new configuration"):
        await nats_server.reload('listen: "127.0.0.1:1"')
    assert nats_server.config_path.read_text() == before
    await assert_roundtrip(nats_server.url)


async def test_reload_with_users_requires_credentials(nats_server: EmbeddedServer) -> None:
    await nats_server.reload(USERS)
    assert USERS in nats_server.config_path.read_text()
    await assert_roundtrip(nats_server.url, user="rosey", password="s3cret")
    anonymous = Client()
    try:
        with pytest.raises(nats.errors.Error, match="Authorization Violation"):
            await anonymous.connect(
                nats_server.url,
                connect_timeout=2,
                max_reconnect_attempts=0,
                allow_reconnect=False,
                error_cb=quiet,
            )
    finally:
        await anonymous.close()  # nats-py leaves the socket open after a refused connect


CHILD = """
import asyncio, sys
from pathlib import Path
from rosey.bus.server import EmbeddedServer

async def main() -> None:
    server = EmbeddedServer(Path(sys.argv[1]))
    await server.start()
    print(server.pid, flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


async def test_server_dies_when_its_parent_is_killed(tmp_path: Path) -> None:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        str(tmp_path),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    server_pid: int | None = None
    try:
        assert child.stdout is not None
        async with asyncio.timeout(DEADLINE):
            line = await child.stdout.readline()
        assert line.strip().isdigit(), f"child said {line!r}"
        server_pid = int(line)
        assert is_alive(server_pid)
        child.send_signal(signal.SIGKILL)
        assert await wait_gone([server_pid], DEADLINE) == []
    finally:
        if child.returncode is None:
            child.kill()
        _, stderr = await child.communicate()
        if server_pid is not None and is_alive(server_pid):
            os.kill(server_pid, signal.SIGKILL)  # started by our child: ours to clean up
        # 255 is asyncio's "exit status already read elsewhere": on this host the status of a
        # SIGKILLed child is now and then taken before asyncio's watcher thread gets it.
        assert child.returncode in (-signal.SIGKILL, 255), stderr.decode(errors="replace")
