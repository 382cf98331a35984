"""``rosey.router.outcome``: what a dispatched command comes to, for chat and for the outcome.

Pure tables (issue 11 took this out of ``Router._dispatch``); the router's end-to-end path is
covered by ``test_router_bounds.py`` (fake bus) and the integration tests.
"""

from __future__ import annotations

import pytest

from rosey.errors import BusError, DecodeError, NoResponders, RequestTimeout
from rosey.protocol import wire
from rosey.router.outcome import MAX_OUTCOME_ERROR, Verdict, from_failure, from_reply, outcome


def reply(ok: bool, text: str | None = None, error: str | None = None) -> wire.CommandReply:
    return {"ok": ok, "text": text, "data": None, "error": error}


@pytest.mark.parametrize(
    ("body", "verdict"),
    [
        (reply(True, "4"), Verdict(None, "4")),
        (reply(True, None), Verdict(None, None)),
        (reply(False, error="bad dice"), Verdict("bad dice", "!roll: bad dice")),
        (reply(False), Verdict("failed", "!roll: failed")),
        # Chosen by the plugin: one line (newlines shown escaped), no terminal escapes.
        (
            reply(False, error="two\nlines \x1b[31mred"),
            Verdict("two\\nlines red", "!roll: two\\nlines red"),
        ),
    ],
)
def test_from_reply(body: wire.CommandReply, verdict: Verdict) -> None:
    assert from_reply("roll", body) == verdict


def test_a_plugins_error_is_bounded() -> None:
    verdict = from_reply("roll", reply(False, error="x" * 10_000))
    assert verdict.error == "x" * MAX_OUTCOME_ERROR


@pytest.mark.parametrize(
    ("exc", "verdict"),
    [
        (
            RequestTimeout("rosey.commands.dice.execute", 2.5),
            Verdict("no answer within 2.5 s", "!roll: dice did not answer in time"),
        ),
        (
            NoResponders("rosey.commands.dice.execute"),
            Verdict("not listening", "!roll: plugin dice is not running"),
        ),
        (
            DecodeError("rosey.commands.dice.execute", "nested too deep"),
            Verdict(
                "unusable reply: nested too deep",
                "!roll: dice gave no usable answer (nested too deep)",
            ),
        ),
        (
            KeyError("text"),
            Verdict(
                "internal error in the router: KeyError", "!roll: failed inside the bot (KeyError)"
            ),
        ),
    ],
)
def test_from_failure(exc: Exception, verdict: Verdict) -> None:
    assert from_failure("roll", "dice", exc, 2.5) == verdict


def test_a_bus_error_says_what_the_bus_said() -> None:
    exc = BusError("connection closed")
    assert from_failure("roll", "dice", exc, 1.0) == Verdict(
        str(exc), "!roll: dice gave no usable answer"
    )


def test_outcome_body() -> None:
    assert outcome("roll", "abc-1", 1.23456, None) == {
        "command": "roll",
        "correlation_id": "abc-1",
        "duration_ms": 1.235,
        "error": None,
    }
