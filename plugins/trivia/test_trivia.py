"""Tests of the trivia plugin: questions and answers (pure), then whole games on a real bus."""

from __future__ import annotations

import asyncio
import collections
from pathlib import Path

import pytest
from trivia import Game, Question, format_scores, load_questions, normalize, parse_questions

from rosey.sdk.testing import PluginHarness

HERE = Path(__file__).parent
BY_TEXT = {q.text: q for q in load_questions(HERE / "questions.json")}
FAST = {"round_seconds": 10, "pause_seconds": 0}


def question_in(line: str) -> Question:
    """The question announced in ``❓ 1/3: What is ...?``."""
    prefix, _, text = line.partition(": ")
    assert prefix.startswith("❓ "), line
    return BY_TEXT[text]


def test_the_bundled_set_is_big_enough_and_well_formed() -> None:
    assert len(BY_TEXT) >= 30
    assert all(q.text.endswith("?") for q in BY_TEXT.values())


@pytest.mark.parametrize(
    ("guess", "ok"),
    [("Paris", True), ("  pARis ", True), ("the  Pacific\tOcean", True), ("Lyon", False)],
)
def test_answers_ignore_case_and_whitespace(guess: str, ok: bool) -> None:
    question = Question("?", ("Paris", "The Pacific Ocean"))
    assert question.accepts(guess) is ok


def test_normalize() -> None:
    assert normalize("  A \n b  ") == "a b"


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ([], "non-empty list"),
        ({"q": "x"}, "non-empty list"),
        ([{"q": "", "a": ["x"]}], "entry 0: 'q'"),
        ([{"q": "ok?", "a": ["x"]}, {"q": "no answers?", "a": []}], "entry 1: 'a'"),
        ([{"q": "ok?", "a": [" "]}], "entry 0: 'a'"),
        (["just text"], "entry 0: 'q'"),
    ],
)
def test_bad_question_files_name_the_entry(data: object, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_questions(data, "q.json")


async def test_only_the_first_correct_answer_scores() -> None:
    game = Game("test", "room", [Question("2+2?", ("4", "four"))])
    game.open_round(game.questions[0])
    assert game.guess("ann", "five") is False
    assert game.guess("bob", " FOUR ") is True
    assert game.guess("ann", "4") is False
    assert game.scores == {"bob": 1}
    game.close_round()
    assert game.guess("ann", "4") is False


def test_format_scores_ranks_by_points_then_name() -> None:
    scores = collections.Counter({"zed": 2, "ann": 1, "bob": 2})
    assert format_scores(scores) == "bob 2, zed 2, ann 1"
    assert format_scores(collections.Counter()) == "nobody scored"


async def test_a_full_round_answered_in_chat() -> None:
    async with PluginHarness.from_folder(HERE, config=FAST) as bot:
        assert await bot.command("!trivia start 1", channel="quiz") == (
            "🎯 trivia: 1 round(s), 10 s each; answer in the chat!"
        )
        asked = await bot.next_chat()
        assert asked["channel"] == "quiz"
        question = question_in(asked["text"])
        await bot.say("no idea", user="bob", channel="quiz")
        await bot.say(f"  {question.answers[-1].upper()} ", user="ann", channel="other-room")
        await bot.say(f"  {question.answers[-1].upper()} ", user="ann", channel="quiz")
        result = await bot.next_chat()
        assert result["text"] == f"✅ ann got it: {question.answers[0]} (ann: 1)"
        assert (await bot.next_chat())["text"] == "🏁 game over! ann 1"
        assert await bot.command("!trivia scores", channel="quiz") == "last game: ann 1"


async def test_an_unanswered_round_times_out() -> None:
    config = {"round_seconds": 0.5, "pause_seconds": 0}
    async with PluginHarness.from_folder(HERE, config=config) as bot:
        await bot.command("!trivia start 1")
        question = question_in((await bot.next_chat())["text"])
        assert (await bot.next_chat())["text"] == (
            f"⏰ time's up! the answer was: {question.answers[0]}"
        )
        assert (await bot.next_chat())["text"] == "🏁 game over! nobody scored"


async def test_stop_ends_the_game_and_reports_scores() -> None:
    async with PluginHarness.from_folder(HERE, config=FAST) as bot:
        await bot.command("!trivia start 3")
        await bot.next_chat()
        assert await bot.command("!trivia scores") == "scores so far (0 round(s)): nobody scored"
        assert await bot.command("!trivia start") == (
            "a game is already running here; !trivia stop ends it"
        )
        assert await bot.command("!trivia stop") == "trivia stopped after 0 round(s): nobody scored"
        assert await bot.command("!trivia stop") == "no game is running here: !trivia start"
        with pytest.raises(TimeoutError):
            await bot.next_chat(timeout=0.3)  # nothing more from the stopped game


async def test_usage_errors() -> None:
    async with PluginHarness.from_folder(HERE, config={"max_rounds": 4}) as bot:
        assert await bot.command("!trivia") == (
            "usage: !trivia start [rounds] | !trivia stop | !trivia scores"
        )
        for bad in ("0", "5", "x", "2 3"):
            assert await bot.command(f"!trivia start {bad}") == (
                "rounds must be a number from 1 to 4: !trivia start 5"
            )
        assert await bot.command("!trivia scores") == (
            "no game has been played here yet: !trivia start"
        )
        assert bot.runtime("trivia").command_errors == 0


async def test_stopping_the_plugin_cancels_running_games() -> None:
    """The game task is owned: on_stop cancels it and waits, so nothing outlives the plugin."""
    async with PluginHarness.from_folder(HERE, config=FAST) as bot:
        await bot.command("!trivia start 2", channel="a")
        await bot.command("!trivia start 2", channel="b")
        await bot.next_chat()
        await bot.next_chat()
        tasks = [t for t in asyncio.all_tasks() if t.get_name().startswith("trivia ")]
        assert len(tasks) == 2
    assert all(t.done() for t in tasks)
