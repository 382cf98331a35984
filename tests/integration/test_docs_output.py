"""The output shown in ``docs/plugins/RUNTIME-CONTROL.md`` is the bot's real output.

Regression (issue 17, item 16): the page called its examples real output, but they showed
``(not enforced by the broker)`` and no Landlock layers while the default bot said otherwise.
This test runs a real bot with the example plugins and the page's config, replays the page's
three sessions in order (the chat session, then the CLI session, then the NATS requests) and
compares each answer with the page after normalising what changes from run to run (pids,
times, uptimes, percentages, memory, log cursors, column widths).

To regenerate the blocks after a change of wording:
``ROSEY_REGEN_DOCS=1 .venv/bin/pytest tests/integration/test_docs_output.py`` rewrites the
chat and CLI blocks with this run's output, and the NATS replies that the page shows in full
(replies abbreviated with ``...`` are checked piece by piece and left as they are).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nats.aio.msg import Msg

from botproc import REPO, BotProcess, run_bot

DOC = REPO / "docs" / "plugins" / "RUNTIME-CONTROL.md"
CONFIG = 'admins: ["console:console", "test:boss"]\n'
REGENERATE = os.environ.get("ROSEY_REGEN_DOCS") == "1"
_BLOCK = re.compile(r"^```\n(.*?)^```\n", re.S | re.M)
_WRAP = 96  # where regenerated NATS replies are wrapped (continuation lines: 4 spaces)

# What changes from run to run, in the order applied; the same on both sides.
_VOLATILE: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"), "TIME"),
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"), "TIME"),
    (re.compile(r"memory [\d.]+ of"), "memory N of"),
    (re.compile(r"\d+ (process\(es\)|thread\(s\)|open file\(s\))"), r"N \1"),
    (re.compile(r'"(processes|threads|open_files)":\d+'), r'"\1":N'),
    (re.compile(r'"cursor":\s*"[^"]*"'), '"cursor":"C"'),
    (re.compile(r'"(pid|uptime_seconds|cpu_percent|memory_mb)":\s*[\d.]+'), r'"\1":N'),
    (re.compile(r"\b\d+(\.\d+)?(?=s\b|%| MB\b)"), "N"),  # uptimes, percentages, memory
    (re.compile(r"\b\d{3,}\b"), "N"),  # pids and other large counters
    (re.compile(r"[ \t]+"), " "),  # table columns are as wide as their values
]


def normalise(text: str) -> str:
    for pattern, replacement in _VOLATILE:
        text = pattern.sub(replacement, text)
    return text.strip()


@dataclass
class Step:
    """One input of a session and the output the page shows for it."""

    said: str  # the chat user, "$" for the CLI, the subject for NATS
    text: str
    expected: str
    actual: str = field(default="")


def blocks() -> list[str]:
    return [m.group(1) for m in _BLOCK.finditer(DOC.read_text())]


def the_block(starting: str) -> str:
    found = [b for b in blocks() if b.startswith(starting)]
    assert len(found) == 1, f"{DOC.name}: expected one block starting {starting!r}"
    return found[0]


def chat_steps(block: str) -> list[Step]:
    """One step per line someone says; the bot's messages (each ``<rosey>``, continued by
    lines indented 8) are joined with a line ``----`` between them."""
    steps: list[Step] = []
    for line in block.splitlines():
        said = re.match(r"<(\w+)>\s+(.*)$", line)
        if said and said.group(1) != "rosey":
            steps.append(Step(said.group(1), said.group(2), ""))
        elif said:
            steps[-1].expected += ("\n----\n" if steps[-1].expected else "") + said.group(2)
        else:
            steps[-1].expected += "\n" + line.removeprefix(" " * 8)
    return steps


def format_chat(steps: list[Step]) -> str:
    lines = []
    for step in steps:
        lines.append(f"<{step.said}>".ljust(8) + step.text)
        for message in step.actual.split("\n----\n"):
            first, *rest = message.splitlines() or [""]
            lines.append("<rosey> " + first)
            lines += [" " * 8 + line for line in rest]
    return "\n".join(lines) + "\n"


def cli_steps(block: str) -> list[Step]:
    steps: list[Step] = []
    for line in block.splitlines():
        if line.startswith("$ "):
            steps.append(Step("$", line[2:], ""))
        else:
            steps[-1].expected += ("\n" if steps[-1].expected else "") + line
    return steps


def format_cli(steps: list[Step]) -> str:
    return "".join(f"$ {s.text}\n" + (s.actual + "\n" if s.actual else "") for s in steps)


def nats_steps(block: str) -> list[Step]:
    steps: list[Step] = []
    for line in block.splitlines():
        if line.startswith("-> "):
            subject, _, body = line[3:].partition(" ")
            steps.append(Step(subject, body, ""))
        elif line.startswith("<- "):
            steps[-1].expected = line[3:]
        elif line.startswith("    ") and steps:
            steps[-1].expected += line[4:]
    return steps


def wrap_json(text: str) -> str:
    """Wrap a compact JSON reply after ``,`` before a key, as the page shows it."""
    lines, line = [], ""
    for piece in re.split(r'(?<=,)(?=")', text):
        if line and len(line) + len(piece) > _WRAP:
            lines.append(line)
            line = ""
        line += piece
    lines.append(line)
    return "\n    ".join(lines)


def nats_matches(expected: str, actual: str) -> bool:
    """Equal, or, for a reply the page abbreviates with ``...``, each piece in order."""
    pieces = [p.strip() for p in re.split(r",?\s*\.\.\.,?\s*", normalise(expected))]
    at = 0
    real = normalise(actual)
    for piece in filter(None, pieces):
        at = real.find(piece, at)
        if at < 0:
            return False
        at += len(piece)
    return "..." in expected or real == normalise(expected)


async def replay_chat(bot: BotProcess, steps: list[Step]) -> None:
    """Say each line on the test platform; collect every message of the answer ([i/N])."""
    assert bot.nc is not None
    replies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def on_reply(msg: Msg) -> None:
        await replies.put(json.loads(msg.data))

    sub = await bot.nc.subscribe("rosey.platform.test.send", cb=on_reply)
    await bot.nc.flush()
    for n, step in enumerate(steps):
        message = {
            "id": f"doc{n}",
            "platform": "test",
            "channel": "room",
            "user": {"username": step.said, "rank": 0},
            "text": step.text,
            "timestamp": time.time(),
        }
        await bot.nc.publish("rosey.events.message", json.dumps(message).encode())
        got: list[str] = []
        expected_parts = 1
        async with asyncio.timeout(30):
            while len(got) < expected_parts:
                reply = await replies.get()
                if reply.get("in_reply_to") != message["id"]:
                    continue
                got.append(str(reply["text"]))
                numbered = re.match(r"\[\d+/(\d+)\] ", got[0])
                expected_parts = int(numbered.group(1)) if numbered else 1
        step.actual = "\n----\n".join(got)
    await sub.unsubscribe()


def replay_cli(bot: BotProcess, steps: list[Step], tmp_path: Path) -> None:
    here = tmp_path / "cli"  # `rosey plugin ...` finds the bot through ./.rosey/runtime.json
    here.mkdir()
    (here / ".rosey").symlink_to(bot.state_dir)
    stale = tmp_path / "stale"  # runtime.json left behind by a killed bot
    (stale / ".rosey").mkdir(parents=True)
    (stale / ".rosey" / "runtime.json").write_text(
        json.dumps(
            {"pid": 999999, "nats_url": "nats://127.0.0.1:1", "user": None, "password": None}
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROSEY_")}
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    env["NO_COLOR"] = "1"
    for step in steps:
        result = subprocess.run(
            ["bash", "-c", step.text],
            cwd=stale if "killed bot" in step.text else here,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=90,
            check=False,
        )
        step.actual = result.stdout.rstrip("\n")


async def replay_nats(bot: BotProcess, steps: list[Step]) -> None:
    assert bot.nc is not None
    cursor = None
    for step in steps:
        body = step.text
        if cursor is not None and '"cursor"' in body:
            body = re.sub(r'"cursor":\s*"[^"]*"', f'"cursor": "{cursor}"', body)
        msg = await bot.nc.request(step.said, body.encode(), timeout=60)
        reply = json.loads(msg.data)
        cursor = (reply.get("result") or {}).get("cursor", cursor)
        step.actual = json.dumps(reply, separators=(",", ":"), ensure_ascii=False)


def mismatches(steps: list[Step], *, nats: bool = False) -> list[str]:
    found = []
    for step in steps:
        same = (
            nats_matches(step.expected, step.actual)
            if nats
            else normalise(step.expected) == normalise(step.actual)
        )
        if not same:
            found.append(
                f"{step.said} {step.text}\n  page: {step.expected!r}\n  real: {step.actual!r}"
            )
    return found


async def test_runtime_control_examples_are_real_output(tmp_path: Path) -> None:
    chat_block = the_block("<boss>")
    cli_block = the_block("$ rosey plugin list\n")
    nats_block = the_block("-> rosey.manager.status")
    logs_block = the_block("-> rosey.manager.logs")
    chat, cli = chat_steps(chat_block), cli_steps(cli_block)
    nats, logs = nats_steps(nats_block), nats_steps(logs_block)
    assert chat
    assert cli
    assert nats
    assert logs
    async with run_bot(tmp_path, config=CONFIG) as bot:
        await replay_chat(bot, chat)
        replay_cli(bot, cli, tmp_path)
        await replay_nats(bot, nats)
        await replay_nats(bot, logs)
    wrong = [*mismatches(chat), *mismatches(cli), *mismatches(nats + logs, nats=True)]
    if REGENERATE and wrong:
        text = DOC.read_text()
        text = text.replace(chat_block, format_chat(chat))
        text = text.replace(cli_block, format_cli(cli))
        for block, steps in ((nats_block, nats), (logs_block, logs)):
            new = block
            for step in steps:
                if "..." not in step.expected and not nats_matches(step.expected, step.actual):
                    old = wrap_json(step.expected) if "\n" not in step.expected else step.expected
                    new = new.replace(old, wrap_json(step.actual))
            text = text.replace(block, new)
        DOC.write_text(text)
        return
    assert not wrong, (
        f"{DOC.relative_to(REPO)} no longer shows the bot's real output "
        "(ROSEY_REGEN_DOCS=1 regenerates it):\n\n" + "\n\n".join(wrong)
    )


_EXCERPT = re.compile(r"<!-- excerpt: (\S+) -->\n```[a-z]*\n(.*?)```\n", re.S)


def test_code_the_guides_quote_is_the_real_code() -> None:
    """A ``<!-- excerpt: PATH -->`` block of a guide appears verbatim in that file, so a quoted
    example (the notes plugin's storage calls) cannot drift from the plugin it quotes."""
    quoted = 0
    for doc in sorted((REPO / "docs").rglob("*.md")):
        for match in _EXCERPT.finditer(doc.read_text()):
            source = REPO / match.group(1)
            assert match.group(2) in source.read_text(), (
                f"{doc.relative_to(REPO)} quotes {match.group(1)}, which no longer has that code"
            )
            quoted += 1
    assert quoted >= 1, "the author guide lost its excerpt of plugins/notes"
