"""Side channels past the broker: keyrings, UDP, unix sockets, netlink (DESIGN 2.5).

Landlock does not see these; the seccomp filter does (``rosey.sandbox.seccomp``). A plugin with
no grants tries each against listeners this test holds (as root here: "any root-owned socket on
the host"); every attempt must be refused, nothing may reach a listener, and the bot, the broker
and a victim plugin must stay healthy. With ``security.seccomp: false`` the same plugin gets
through (``test_each_channel_is_open_without_the_filter``), which is what shows the layer is
the one doing the work.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botproc import EXAMPLE_PLUGINS, FIXTURE_PLUGINS, BotProcess, run_bot

SIDECHAN = FIXTURE_PLUGINS / "sidechan"
DICE = EXAMPLE_PLUGINS / "dice"
CHANNELS = ["keyring", "udp", "unix", "abstract", "netlink"]


@dataclass
class Listeners:
    """A UDP port, a pathname and an abstract unix socket; what reached each."""

    udp_port: int = 0
    unix_path: str = ""
    abstract: str = ""
    received: dict[str, int] = field(default_factory=lambda: {"udp": 0, "unix": 0, "abstract": 0})


@contextlib.asynccontextmanager
async def listening(folder: Path) -> AsyncIterator[Listeners]:
    loop = asyncio.get_running_loop()
    found = Listeners(abstract=f"rosey-test-{secrets.token_hex(4)}")

    class Udp(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: Any) -> None:
            found.received["udp"] += 1

    udp, _ = await loop.create_datagram_endpoint(Udp, local_addr=("127.0.0.1", 0))
    found.udp_port = udp.get_extra_info("sockname")[1]

    def counter(kind: str) -> Any:
        async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            found.received[kind] += 1
            # Read what the plugin sends before closing: closed at once, its send could meet
            # a closed peer (EPIPE) and an open channel would look refused.
            with contextlib.suppress(ConnectionError):
                await reader.read(64)
            writer.close()

        return accepted

    found.unix_path = str(folder / "root-owned.sock")
    unix = await asyncio.start_unix_server(counter("unix"), path=found.unix_path)
    os.chmod(found.unix_path, 0o777)  # only the sandbox may stand in the way, not file modes
    abstract = await asyncio.start_unix_server(counter("abstract"), path="\0" + found.abstract)
    try:
        yield found
    finally:
        udp.close()
        for server in (unix, abstract):
            server.close()
            await server.wait_closed()


async def attempt(bot: BotProcess, found: Listeners) -> dict[str, str]:
    args = f"{found.udp_port} {found.unix_path} {found.abstract}"
    assert await bot.chat(f"!sidechan {args}", timeout=20) == "done"
    outcome: dict[str, str] = json.loads(
        (bot.state_dir / "data" / "sidechan" / "sidechan.json").read_text()
    )
    return outcome


async def healthy(bot: BotProcess) -> None:
    assert bot.proc.returncode is None
    assert await bot.chat("!roll 1d1", user="ann") == "ann rolled 1d1: 🎲 1"
    for name in ("dice", "sidechan"):
        status = (await bot.manage("status", {"plugin": name}))["result"]
        assert status["state"] == "running", status


async def test_every_side_channel_is_refused(tmp_path: Path, bot_privilege: str) -> None:
    unprivileged = bot_privilege == "unprivileged"
    async with (
        listening(tmp_path) as found,
        run_bot(tmp_path, plugins_dirs=[DICE, SIDECHAN], unprivileged=unprivileged) as bot,
    ):
        layers = (await bot.manage("status", {"plugin": "sidechan"}))["result"]["layers"]
        assert "seccomp" in layers, layers
        outcome = await attempt(bot, found)
        assert outcome == dict.fromkeys(CHANNELS, "refused: EPERM"), outcome
        await healthy(bot)
    assert found.received == {"udp": 0, "unix": 0, "abstract": 0}


async def test_each_channel_is_open_without_the_filter(tmp_path: Path) -> None:
    """The control: the same plugin with ``security.seccomp: false`` gets through, so the
    refusals above are the filter's (Landlock scopes abstract sockets on ABI 6+, so that one
    may stay closed)."""
    config = "security: {seccomp: false}\n"
    async with (
        listening(tmp_path) as found,
        run_bot(tmp_path, plugins_dirs=[DICE, SIDECHAN], config=config) as bot,
    ):
        outcome = await attempt(bot, found)
        for channel in ("keyring", "udp", "unix", "netlink"):
            assert outcome[channel] == "allowed", outcome
        await healthy(bot)
    assert found.received["udp"] == 1, found.received
    assert found.received["unix"] == 1, found.received
