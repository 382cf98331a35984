"""Output hygiene and a router one plugin cannot starve (issue 10, "What must hold" 7).

Found by an attacker, each pinned here with a real fixture plugin (``noisy``,
``forged_control``) next to a victim (``dice``):

- escape sequences in a plugin's reply and stderr tail reached the console, ``rosey plugin
  status`` and ``!plugin status`` (title change, screen clear, clipboard write via OSC 52); a
  forged control-channel message put them in the bot's log;
- a reply of 100 000 nested lists killed the router's task with ``RecursionError``: no reply,
  no outcome;
- 2 000 commands to a plugin that never answers held up every command, ``!plugin`` included;
- a 900 KB reply was sent as one chat message.

Each test also checks the bot and the victim keep working.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nats.aio.msg import Msg

from botproc import EXAMPLE_PLUGINS, FIXTURE_PLUGINS, REPO, BotProcess, run_bot, run_rosey
from helpers import eventually
from rosey.bus.client import EventBus
from rosey.connectors.console import ConsoleConnector
from rosey.router.split import MAX_CHARS, MAX_MESSAGES

DICE = EXAMPLE_PLUGINS / "dice"
NOISY = FIXTURE_PLUGINS / "noisy"
FORGED = FIXTURE_PLUGINS / "forged_control"
HANGS = 2000


def raw_controls(text: str) -> list[str]:
    """The characters in ``text`` a terminal would act on (C0 but tab/newline, DEL, C1, bidi)."""
    return [
        c
        for c in text
        if (ord(c) < 0x20 and c not in "\t\n")
        or 0x7F <= ord(c) <= 0x9F
        or 0x202A <= ord(c) <= 0x202E
        or 0x2066 <= ord(c) <= 0x2069
    ]


class Chat:
    """A test connector that keeps every reply, so a split reply can be read whole."""

    def __init__(self, bot: BotProcess) -> None:
        self.bot = bot
        self.replies: dict[str, list[str]] = {}
        self._ids = 0

    async def start(self) -> None:
        assert self.bot.nc is not None

        async def on_reply(msg: Msg) -> None:
            body = json.loads(msg.data)
            self.replies.setdefault(str(body.get("in_reply_to")), []).append(body["text"])

        await self.bot.nc.subscribe("rosey.platform.test.send", cb=on_reply)
        await self.bot.nc.flush()

    async def say(self, text: str) -> str:
        assert self.bot.nc is not None
        self._ids += 1
        message_id = f"c{self._ids}"
        message = {
            "id": message_id,
            "platform": "test",
            "channel": "room",
            "user": {"username": "tester", "rank": 0},
            "text": text,
            "timestamp": time.time(),
        }
        await self.bot.nc.publish("rosey.events.message", json.dumps(message).encode())
        return message_id

    async def wait(
        self, message_id: str, done: Callable[[list[str]], bool], timeout: float, what: str
    ) -> list[str]:
        async def check() -> bool:
            return done(self.replies.get(message_id, []))

        await eventually(check, timeout, what)
        return self.replies[message_id]


async def outcomes(bot: BotProcess, plugin: str) -> list[tuple[str, dict[str, Any]]]:
    """Start collecting ``(subject, body)`` of the router's outcomes for ``plugin``."""
    assert bot.nc is not None
    seen: list[tuple[str, dict[str, Any]]] = []

    async def on_outcome(msg: Msg) -> None:
        seen.append((msg.subject, json.loads(msg.data)))

    await bot.nc.subscribe(f"rosey.commands.{plugin}.result", cb=on_outcome)
    await bot.nc.subscribe(f"rosey.commands.{plugin}.error", cb=on_outcome)
    await bot.nc.flush()
    return seen


async def victim_works(bot: BotProcess) -> None:
    assert bot.proc.returncode is None
    assert await bot.chat("!roll 1d1", user="ann", timeout=5) == "ann rolled 1d1: 🎲 1"


async def cli(bot: BotProcess, *args: str) -> tuple[int, str]:
    """``rosey plugin ARGS`` as a subprocess; its exit code and stdout + stderr."""
    code, out, err = await run_rosey(
        "plugin", *args, "--state-dir", str(bot.state_dir), timeout=30, cwd=REPO
    )
    return code, out + err


async def test_escapes_from_replies_stderr_and_the_control_channel_reach_no_reader(
    tmp_path: Path, bot_privilege: str
) -> None:
    async with run_bot(
        tmp_path,
        plugins_dirs=[DICE, NOISY, FORGED],
        unprivileged=(bot_privilege == "unprivileged"),
    ) as bot:
        # A reply, in chat.
        reply = await bot.chat("!escape", timeout=10)
        assert reply.startswith("before ")
        assert reply.endswith(" after")
        assert "forged" in reply
        assert raw_controls(reply) == []

        # The same reply on the console connector (a real one, on the bot's bus).
        assert bot.runtime["user"] is not None
        out = io.StringIO()
        async with EventBus(
            bot.runtime["nats_url"],
            name="test-console",
            user=bot.runtime["user"],
            password=bot.runtime["password"],
        ) as bus:
            console = ConsoleConnector(bus, out=out)
            await console.start()
            await console.say("!escape")

            async def printed() -> bool:
                return "after" in out.getvalue()

            await eventually(printed, 10, "the console printed the reply")
            await console.stop()
        assert "forged" in out.getvalue()
        assert raw_controls(out.getvalue()) == []

        # Stderr, then a crash: the tail is in last_error, shown by every face.
        assert bot.nc is not None
        await bot.nc.publish(
            "rosey.events.message",
            json.dumps(
                {
                    "id": "crash",
                    "platform": "test",
                    "channel": "room",
                    "user": {"username": "tester", "rank": 0},
                    "text": "!crash",
                }
            ).encode(),
        )

        async def crashed() -> bool:
            status = (await bot.manage("status", {"plugin": "noisy"}))["result"]
            return status["state"] == "crashed" and "marker" in (status["last_error"] or "")

        await eventually(crashed, 15, "noisy crashed with its stderr in last_error")
        chat = Chat(bot)
        await chat.start()
        status_id = await chat.say("!plugin status noisy")
        parts = await chat.wait(
            status_id, lambda got: "marker" in "".join(got), 10, "!plugin status shows stderr"
        )
        assert raw_controls("\n".join(parts)) == []
        code, text = await cli(bot, "status", "noisy")
        assert code == 0, text
        assert "marker" in text
        assert raw_controls(text) == [], text
        code, text = await cli(bot, "status", "noisy", "--json")
        assert code == 0, text
        assert raw_controls(text) == [], text
        assert "marker" in json.loads(text)["result"]["last_error"]

        # A forged control message: the failure it claims is logged, without its escapes.
        async def failed() -> bool:
            status = (await bot.manage("status", {"plugin": "forged_control"}))["result"]
            return "forged" in (status["last_error"] or "")

        await eventually(failed, 15, "forged_control's start failed")
        await bot.wait_for_log("forged", timeout=10)
        assert raw_controls("\n".join(bot.log)) == []
        assert not any(line.startswith("2099-01-01") for line in bot.log)  # no forged line

        await victim_works(bot)


async def test_deep_and_huge_replies_get_a_clean_answer_and_an_outcome(
    tmp_path: Path, bot_privilege: str
) -> None:
    async with run_bot(
        tmp_path, plugins_dirs=[DICE, NOISY], unprivileged=(bot_privilege == "unprivileged")
    ) as bot:
        chat = Chat(bot)
        await chat.start()
        seen = await outcomes(bot, "noisy")

        deep = await chat.say("!deep")
        (answer,) = await chat.wait(deep, bool, 10, "an answer to !deep")
        assert answer == "!deep: noisy gave no usable answer (body nests deeper than 64 levels)"

        async def deep_counted() -> bool:
            return any(s.endswith(".error") and b["command"] == "deep" for s, b in seen)

        await eventually(deep_counted, 10, "an .error outcome for !deep")

        huge = await chat.say("!huge")
        parts = await chat.wait(
            huge, lambda got: any("(truncated" in p for p in got), 10, "!huge's last part"
        )
        assert len(parts) == MAX_MESSAGES
        assert all(len(p) <= MAX_CHARS for p in parts)
        assert parts[-1].endswith("more characters)")
        assert sum(p.count("H") for p in parts) > 2000

        async def huge_counted() -> bool:
            return any(s.endswith(".result") and b["command"] == "huge" for s, b in seen)

        await eventually(huge_counted, 10, "a .result outcome for !huge")
        await victim_works(bot)


async def test_a_plugin_that_never_answers_holds_up_no_other_command(
    tmp_path: Path, bot_privilege: str
) -> None:
    async with run_bot(
        tmp_path, plugins_dirs=[DICE, NOISY], unprivileged=(bot_privilege == "unprivileged")
    ) as bot:
        chat = Chat(bot)
        await chat.start()
        hangs = [await chat.say("!hang") for _ in range(HANGS)]

        # Within a deadline well under the command timeout (10 s) the hung commands would
        # otherwise free their slots at.
        await victim_works(bot)
        listing = await bot.chat("!plugin list", timeout=5)
        assert "dice: running" in listing
        assert "noisy:" in listing

        async def busy_answered() -> bool:
            busy = [m for m in hangs if any("busy" in r for r in chat.replies.get(m, []))]
            return len(busy) >= HANGS - 128

        await eventually(busy_answered, 10, "the commands beyond the bound answered 'busy'")
        await victim_works(bot)
