"""The magic 8-ball: ``!8ball QUESTION``."""

from __future__ import annotations

import hashlib
import random

from rosey.sdk import CommandContext, Plugin, UsageError, command

ANSWERS = (
    "It is certain.",
    "It is decidedly so.",
    "Without a doubt.",
    "Yes, definitely.",
    "You may rely on it.",
    "As I see it, yes.",
    "Most likely.",
    "Outlook good.",
    "Yes.",
    "Signs point to yes.",
    "Reply hazy, try again.",
    "Ask again later.",
    "Better not tell you now.",
    "Cannot predict now.",
    "Concentrate and ask again.",
    "Don't count on it.",
    "My reply is no.",
    "My sources say no.",
    "Outlook not so good.",
    "Very doubtful.",
)


def answer(question: str, rng: random.Random | None = None) -> str:
    """An answer; with ``config.consistent`` the same question always gets the same one."""
    if rng is None:
        digest = hashlib.sha256(question.strip().lower().encode()).digest()
        return ANSWERS[int.from_bytes(digest[:4], "big") % len(ANSWERS)]
    return rng.choice(ANSWERS)


class EightBallPlugin(Plugin):
    @command("8ball")
    async def eightball(self, ctx: CommandContext) -> str:
        """Ask the magic 8-ball a yes-or-no question.

        usage: !8ball QUESTION
        """
        question = ctx.arg_text.strip()
        if not question:
            raise UsageError("ask a question: !8ball will it rain tomorrow?")
        if self.config.get("consistent", False):
            return f"🎱 {answer(question)}"
        return f"🎱 {answer(question, random.SystemRandom())}"

    @command("eightball")
    async def eightball_long(self, ctx: CommandContext) -> str:
        """Ask the magic 8-ball a yes-or-no question (as !8ball).

        usage: !eightball QUESTION
        """
        return await self.eightball(ctx)
