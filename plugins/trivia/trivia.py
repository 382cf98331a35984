"""Trivia: ``!trivia start [rounds]``, ``!trivia stop``, ``!trivia scores``.

A game runs in the channel where it was started, as a task the plugin owns: it posts each
question with ``send_chat`` (grant ``chat.send``), waits ``round_seconds`` for the first correct
answer among the chat lines it hears (grant ``events.message``), announces the result and moves
on. ``!trivia stop`` and the plugin's ``on_stop`` cancel the task and wait for it to end.
"""

from __future__ import annotations

import asyncio
import collections
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rosey.sdk import CommandContext, Plugin, UsageError, command, on_event

USAGE = "usage: !trivia start [rounds] | !trivia stop | !trivia scores"
HERE = Path(__file__).parent


def normalize(text: str) -> str:
    """What counts when comparing answers: case and runs of whitespace do not."""
    return " ".join(text.casefold().split())


@dataclass(frozen=True, slots=True)
class Question:
    text: str
    answers: tuple[str, ...]

    def accepts(self, guess: str) -> bool:
        wanted = normalize(guess)
        return any(normalize(answer) == wanted for answer in self.answers)


def parse_questions(data: Any, source: str) -> list[Question]:
    """``[{"q": "...", "a": ["...", ...]}, ...]`` → questions; ``ValueError`` naming the entry."""
    if not isinstance(data, list) or not data:
        raise ValueError(f"{source}: expected a non-empty list of {{'q': ..., 'a': [...]}}")
    questions = []
    for index, item in enumerate(data):
        text = item.get("q") if isinstance(item, dict) else None
        answers = item.get("a") if isinstance(item, dict) else None
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"{source}: entry {index}: 'q' must be the question text")
        if (
            not isinstance(answers, list)
            or not answers
            or not all(isinstance(a, str) and a.strip() for a in answers)
        ):
            raise ValueError(f"{source}: entry {index}: 'a' must be a list of accepted answers")
        questions.append(Question(text.strip(), tuple(answers)))
    return questions


def load_questions(path: Path) -> list[Question]:
    return parse_questions(json.loads(path.read_text(encoding="utf-8")), str(path))


def format_scores(scores: collections.Counter[str]) -> str:
    if not scores:
        return "nobody scored"
    ranked = sorted(scores.items(), key=lambda item: (-item[1], item[0]))
    return ", ".join(f"{user} {points}" for user, points in ranked)


@dataclass
class Game:
    """One game in one channel: its questions, the open round and the scores."""

    platform: str
    channel: str
    questions: list[Question]
    scores: collections.Counter[str] = field(default_factory=collections.Counter)
    played: int = 0
    current: Question | None = None
    winner: asyncio.Future[str] | None = None

    def open_round(self, question: Question) -> asyncio.Future[str]:
        self.current = question
        self.winner = asyncio.get_running_loop().create_future()
        return self.winner

    def close_round(self) -> None:
        self.current = None
        self.winner = None

    def guess(self, user: str, text: str) -> bool:
        """Score ``user`` if ``text`` answers the open round first; True if it did."""
        if self.current is None or self.winner is None or self.winner.done():
            return False
        if not self.current.accepts(text):
            return False
        self.scores[user] += 1
        self.winner.set_result(user)
        return True


class TriviaPlugin(Plugin):
    rng = random.SystemRandom()

    async def on_start(self) -> None:
        self.questions = load_questions(
            HERE / str(self.config.get("questions_file", "questions.json"))
        )
        self._games: dict[tuple[str, str], Game] = {}
        self._tasks: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._last_scores: dict[tuple[str, str], collections.Counter[str]] = {}
        self.log.info("%d questions loaded", len(self.questions))

    async def on_stop(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    @command("trivia")
    async def trivia(self, ctx: CommandContext) -> str:
        """Play trivia: questions in the channel, first right answer scores.

        usage: !trivia start [rounds] | !trivia stop | !trivia scores
        """
        sub = ctx.args[0].lower() if ctx.args else ""
        where = (ctx.platform, ctx.channel)
        if sub == "start":
            return self._start(where, ctx.args[1:])
        if sub == "stop":
            return await self._stop(where)
        if sub == "scores":
            game = self._games.get(where)
            if game is not None:
                return f"scores so far ({game.played} round(s)): {format_scores(game.scores)}"
            last = self._last_scores.get(where)
            if last is None:
                return "no game has been played here yet: !trivia start"
            return f"last game: {format_scores(last)}"
        raise UsageError(USAGE)

    def _start(self, where: tuple[str, str], args: tuple[str, ...]) -> str:
        if where in self._games:
            raise UsageError("a game is already running here; !trivia stop ends it")
        most = min(int(self.config.get("max_rounds", 20)), len(self.questions))
        rounds = int(self.config.get("default_rounds", 5))
        if args:
            if len(args) > 1 or not args[0].isdigit() or not 1 <= int(args[0]) <= most:
                raise UsageError(f"rounds must be a number from 1 to {most}: !trivia start 5")
            rounds = int(args[0])
        rounds = min(rounds, most)
        game = Game(where[0], where[1], self.rng.sample(self.questions, rounds))
        self._games[where] = game
        task = asyncio.create_task(self._play(game), name=f"trivia {where}")
        self._tasks[where] = task
        task.add_done_callback(lambda t: self._ended(where, t))
        seconds = float(self.config.get("round_seconds", 30))
        return f"🎯 trivia: {rounds} round(s), {seconds:g} s each; answer in the chat!"

    async def _stop(self, where: tuple[str, str]) -> str:
        task, game = self._tasks.get(where), self._games.get(where)
        if task is None or game is None:
            raise UsageError("no game is running here: !trivia start")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return f"trivia stopped after {game.played} round(s): {format_scores(game.scores)}"

    def _ended(self, where: tuple[str, str], task: asyncio.Task[None]) -> None:
        game = self._games.pop(where, None)
        self._tasks.pop(where, None)
        if game is not None:
            self._last_scores[where] = game.scores
        if not task.cancelled() and task.exception() is not None:
            self.log.error("the game in %s failed", where, exc_info=task.exception())

    async def _play(self, game: Game) -> None:
        round_seconds = float(self.config.get("round_seconds", 30))
        pause = float(self.config.get("pause_seconds", 3))
        total = len(game.questions)
        for number, question in enumerate(game.questions, start=1):
            await asyncio.sleep(pause)
            winner = game.open_round(question)
            await self._say(game, f"❓ {number}/{total}: {question.text}")
            try:
                async with asyncio.timeout(round_seconds):
                    user = await winner
            except TimeoutError:
                text = f"⏰ time's up! the answer was: {question.answers[0]}"
            else:
                text = f"✅ {user} got it: {question.answers[0]} ({user}: {game.scores[user]})"
            finally:
                game.close_round()
            game.played = number
            await self._say(game, text)
        await self._say(game, f"🏁 game over! {format_scores(game.scores)}")

    async def _say(self, game: Game, text: str) -> None:
        await self.send_chat(game.platform, game.channel, text)

    @on_event("rosey.events.message")
    async def heard(self, event: dict[str, Any]) -> None:
        text, user = event.get("text"), event.get("user")
        game = self._games.get((str(event.get("platform")), str(event.get("channel"))))
        if game is None or not isinstance(text, str) or not isinstance(user, dict):
            return
        game.guess(str(user.get("username", "someone")), text)
