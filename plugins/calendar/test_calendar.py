"""Tests of the calendar plugin: durations and the book (pure), then reminders on a real bus,
together with the markov plugin it depends on."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from reminders import LATE_AFTER_S, Reminder, ReminderBook, describe, parse_duration

from rosey.sdk import UsageError
from rosey.sdk.testing import PluginHarness, PluginUnderTest

HERE = Path(__file__).parent
MARKOV = HERE.parent / "markov"
TAUGHT = "bananas are yellow and bananas are tasty"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1s", 1), ("10m", 600), ("1h30m", 5400), ("2H", 7200), ("7d", 604800), ("90s", 90)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("0s", "between 1s and 7d away"),
        ("7d1s", "between 1s and 7d away"),
        ("10", "not a duration"),
        ("m", "not a duration"),
        ("1.5h", "not a duration"),
        ("-5m", "not a duration"),
        ("10y", "not a duration"),
    ],
)
def test_bad_durations_say_what_is_allowed(text: str, problem: str) -> None:
    with pytest.raises(UsageError, match=problem):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (5, "5s"), (598, "9m 58s"), (3600, "1h"), (93784, "1d 2h"), (0.4, "0s")],
)
def test_describe(seconds: float, text: str) -> None:
    assert describe(seconds) == text


def test_announcement_is_marked_late_and_carries_the_flourish() -> None:
    reminder = Reminder(1, 100.0, "tea", "ann", "test", "room")
    assert reminder.announcement(100.5, None) == "⏰ ann: tea"
    assert reminder.announcement(100.0 + LATE_AFTER_S + 60, "so it goes") == (
        "⏰ ann: tea (late by 1m 5s: I was not running) — 💭 so it goes"
    )


def test_book_orders_by_due_time_and_round_trips() -> None:
    book = ReminderBook()
    book.add(50.0, "later", "ann", "test", "room")
    book.add(10.0, "sooner", "bob", "test", "room")
    assert [r.text for r in book] == ["sooner", "later"]
    again = ReminderBook.from_json(json.loads(json.dumps(book.to_json())))
    assert list(again) == list(book)
    assert again.next_id == 3
    assert again.count_for("ann") == 1


@pytest.mark.parametrize("data", [None, {"reminders": {}}, {"reminders": [{"id": 1}]}])
def test_from_json_refuses_what_is_not_a_reminder_file(data: object) -> None:
    with pytest.raises(ValueError, match="not a reminder file"):
        ReminderBook.from_json(data)


def with_markov(data_dir: Path | None = None) -> PluginHarness:
    """Calendar and the markov plugin it calls, on one bus (markov babbles after one line)."""
    return PluginHarness(
        PluginUnderTest.from_folder(HERE),
        also=[PluginUnderTest.from_folder(MARKOV, config={"min_lines": 1})],
        data_dir=data_dir,
    )


async def test_a_reminder_is_announced_with_a_flourish_from_markov() -> None:
    async with with_markov() as bot:
        await bot.say(TAUGHT)
        await bot.wait_handled(1, plugin="markov")
        reply = await bot.command('!remind in 1s drink "water"', user="ann", channel="room")
        assert reply == "reminder #1 set for 1s from now"
        announced = await bot.next_chat(timeout=10)
        assert announced["channel"] == "room"
        assert announced["in_reply_to"] is None
        match = re.fullmatch(r'⏰ ann: drink "water" — 💭 (.+)', announced["text"])
        assert match is not None, announced["text"]
        assert set(match.group(1).split()) <= set(TAUGHT.split())
        assert await bot.command("!remind list", channel="room") == (
            "no reminders here; set one: !remind in 10m stretch"
        )


async def test_without_markov_the_reminder_is_still_announced(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with PluginHarness.from_folder(HERE) as bot:
        await bot.command("!remind in 1s stretch")
        assert (await bot.next_chat(timeout=10))["text"] == "⏰ tester: stretch"
    assert "announcing without a flourish: markov: !markov failed" in caplog.text


async def test_list_and_cancel() -> None:
    async with with_markov() as bot:
        assert await bot.command("!remind in 2h tea", user="ann") == (
            "reminder #1 set for 2h from now"
        )
        await bot.command("!remind in 10m stretch", user="bob")
        await bot.command("!remind in 1m elsewhere", user="bob", channel="other")
        listed = await bot.command("!remind list")
        assert re.fullmatch(
            r"#2 in (10m|9m 5\ds) for bob: stretch \| #1 in (2h|1h 59m) for ann: tea", listed or ""
        ), listed
        assert await bot.command("!remind cancel 1", user="bob") == (
            "only ann may cancel reminder #1"
        )
        assert await bot.command("!remind cancel #3", user="bob") == (
            "there is no reminder #3 here; see !remind list"
        )
        assert await bot.command("!remind cancel 1", user="ann") == "reminder #1 cancelled"
        assert (await bot.command("!remind list") or "").startswith("#2 in ")


async def test_usage_errors_are_replies() -> None:
    async with PluginHarness.from_folder(HERE, config={"max_per_user": 1}) as bot:
        usage = (
            "usage: !remind in 10m TEXT (units s, m, h, d; e.g. 1h30m) "
            "| !remind list | !remind cancel ID"
        )
        assert await bot.command("!remind") == usage
        assert await bot.command("!remind in 10m") == usage
        assert await bot.command("!remind in 8d too far") == (
            "a reminder must be between 1s and 7d away (got 8d)"
        )
        assert await bot.command("!remind cancel x") == (
            "'x' is not a reminder number; see !remind list"
        )
        await bot.command("!remind in 1h one")
        assert await bot.command("!remind in 1h two") == (
            "you have 1 reminders already; cancel one first"
        )
        assert bot.runtime("calendar").command_errors == 0


async def test_reminders_survive_a_restart_and_are_rescheduled(tmp_path: Path) -> None:
    async with with_markov(data_dir=tmp_path) as bot:
        await bot.command("!remind in 2s soon")
        await bot.command("!remind in 1h later")
    saved = json.loads((tmp_path / "data" / "calendar" / "reminders.json").read_text())
    assert [r["text"] for r in saved["reminders"]] == ["soon", "later"]
    async with with_markov(data_dir=tmp_path) as bot:
        announced = await bot.next_chat(timeout=10)
        assert announced["text"].startswith("⏰ tester: soon")
        assert (await bot.command("!remind list") or "").startswith("#2 in ")


async def test_a_damaged_file_is_kept_aside_and_the_plugin_starts(tmp_path: Path) -> None:
    folder = tmp_path / "data" / "calendar"
    folder.mkdir(parents=True)
    (folder / "reminders.json").write_text("[oops")
    async with PluginHarness.from_folder(HERE, data_dir=tmp_path) as bot:
        assert await bot.command("!remind in 1h ok") == "reminder #1 set for 1h from now"
    broken = [p for p in folder.iterdir() if p.name.startswith("reminders.json.broken-")]
    assert [p.read_text() for p in broken] == ["[oops"]
