"""python-socketio and aiohttp's server stay in the CyTube connector's process (issue 12).

A plugin process imports ``rosey.sdk``, ``rosey.protocol`` and the runner; the connector's pure
modules import no I/O package either. Checked in a fresh interpreter, where ``sys.modules`` shows
what an import really pulled in.
"""

from __future__ import annotations

import asyncio
import json
import sys

import pytest

#: nats-py would import aiohttp for its websocket transport; ``rosey.bus.client`` keeps it from
#: doing so (see test_architecture.py), so no aiohttp at all on these paths.
HEAVY = ("socketio", "engineio", "aiohttp")


async def loaded_after(*modules: str) -> set[str]:
    code = (
        "import importlib, json, sys\n"
        f"for name in {list(modules)!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(30):
        out, _ = await proc.communicate()
    assert proc.returncode == 0
    return set(json.loads(out))


@pytest.mark.parametrize(
    "modules",
    [
        ("rosey.sdk", "rosey.sdk.runner", "rosey.protocol"),
        ("rosey.connectors", "rosey.connectors.console"),
        (
            "rosey.connectors.cytube.pacer",
            "rosey.connectors.cytube.text",
            "rosey.connectors.cytube.state",
            "rosey.connectors.cytube.policy",
            "rosey.connectors.cytube.settings",
            "rosey.connectors.cytube.outbox",
        ),
    ],
)
async def test_socketio_and_aiohttp_stay_off_these_paths(modules: tuple[str, ...]) -> None:
    assert not (await loaded_after(*modules)) & set(HEAVY)


async def test_the_client_does_load_them() -> None:
    """The check above can see these packages: the client module loads them."""
    assert {"socketio", "engineio"} <= await loaded_after("rosey.connectors.cytube.client")
