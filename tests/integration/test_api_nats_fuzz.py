"""Property: whatever arrives on ``rosey.manager.<action>``, an ok/error envelope comes back.

Random bytes, JSON of random shapes, and request-shaped bodies with random field types are
thrown at every action subject (and at unknown ones) of a real running bot. Each must get an
envelope within a deadline, never a timeout; afterwards the bot still answers ``!roll 1d1``.
Mutating requests only ever name ``eightball`` or plugins that do not exist, so dice keeps
running and the final check means something.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from botproc import EXAMPLE_PLUGINS, BotProcess, run_bot
from helpers import wait_gone

pytestmark = pytest.mark.asyncio(loop_scope="module")

ACTIONS = ["list", "status", "start", "stop", "restart", "enable", "disable", "logs", "help"]
CODES = {"not_found", "invalid_state", "dependency", "forbidden", "bad_request", "internal"}

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
plugin_names = st.sampled_from(
    ["eightball", "nosuch", "", "Dice", "../../etc/passwd", "a.b"]
) | st.text(max_size=70)
request_like = st.fixed_dictionaries(
    {"plugin": plugin_names | json_values},
    optional={
        "lines": st.integers(-5, 20000) | json_values,
        "cursor": st.sampled_from(["0:0", "1:2", "x"]) | json_values,
        "action": st.sampled_from(ACTIONS) | json_values,
    },
)
valid_for_eightball = st.fixed_dictionaries(
    {"plugin": st.just("eightball")}, optional={"lines": st.integers(1, 100)}
)
payloads = (
    valid_for_eightball.map(lambda v: json.dumps(v).encode())
    | st.binary(max_size=300)
    | json_values.map(lambda v: json.dumps(v).encode())
    | request_like.map(lambda v: json.dumps(v).encode())
)
subjects = st.sampled_from(ACTIONS) | st.sampled_from(["nope", "events", "LIST", "x" * 60])


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def bot(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BotProcess]:
    tmp = tmp_path_factory.mktemp("api_fuzz")
    dirs = [EXAMPLE_PLUGINS / "dice", EXAMPLE_PLUGINS / "eightball"]
    async with run_bot(tmp, plugins_dirs=dirs) as running:
        children = running.descendants()
        yield running
        assert await running.terminate() == 0, "\n".join(running.log[-30:])
    assert await wait_gone(children, timeout=10) == []


@settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(action=subjects, data=payloads)
async def test_every_payload_gets_an_envelope(bot: BotProcess, action: str, data: bytes) -> None:
    assert bot.nc is not None
    # A timeout here (nats-py raises) is the failure this test exists to catch.
    msg = await bot.nc.request(f"rosey.manager.{action}", data, timeout=20)
    reply = json.loads(msg.data)
    assert isinstance(reply, dict)
    assert isinstance(reply["ok"], bool)
    if reply["ok"]:
        assert "result" in reply
    else:
        assert reply["error"]["code"] in CODES, reply
        assert isinstance(reply["error"]["message"], str)
        assert reply["error"]["code"] != "internal", reply  # only expected refusals


async def test_the_bot_is_still_well_afterwards(bot: BotProcess) -> None:
    assert await bot.chat("!roll 1d1", user="ann") == "ann rolled 1d1: 🎲 1"
    listing = await bot.manage("list")
    assert listing["ok"]
    assert {p["name"] for p in listing["result"]["plugins"]} == {"dice", "eightball"}
    for name in ("eightball",):  # the fuzz may have stopped or disabled it: it can come back
        assert (await bot.manage("enable", {"plugin": name}))["ok"]
        assert (await bot.manage("start", {"plugin": name}))["ok"]
    assert "bad message" not in "\n".join(bot.log)
    assert "Traceback" not in "\n".join(bot.log)
