"""Dice: ``!roll NdM[+K]`` and ``!flip``."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from rosey.sdk import CommandContext, Plugin, UsageError, command

_NOTATION = re.compile(r"^(\d*)d(\d+)([+-]\d+)?$", re.IGNORECASE)
USAGE = "usage: !roll NdM[+K], e.g. !roll 2d6+3 (N dice with M sides, plus K)"


@dataclass(frozen=True)
class Roll:
    count: int
    sides: int
    modifier: int


def parse_roll(text: str, *, max_dice: int = 100, max_sides: int = 1000) -> Roll:
    """``2d6+3`` → Roll(2, 6, 3); ``UsageError`` saying what is allowed otherwise."""
    match = _NOTATION.match(text.strip())
    if match is None:
        raise UsageError(f"{text!r} is not dice notation; {USAGE}")
    count = int(match.group(1) or 1)
    sides = int(match.group(2))
    modifier = int(match.group(3) or 0)
    if not 1 <= count <= max_dice:
        raise UsageError(f"roll between 1 and {max_dice} dice (got {count})")
    if not 1 <= sides <= max_sides:
        raise UsageError(f"dice need between 1 and {max_sides} sides (got {sides})")
    if abs(modifier) > 1_000_000:
        raise UsageError("the modifier must be between -1000000 and +1000000")
    return Roll(count, sides, modifier)


def roll(spec: Roll, rng: random.Random) -> tuple[list[int], int]:
    faces = [rng.randint(1, spec.sides) for _ in range(spec.count)]
    return faces, sum(faces) + spec.modifier


def describe(spec: Roll, faces: list[int], total: int) -> str:
    shown = ", ".join(map(str, faces[:20])) + (", …" if len(faces) > 20 else "")
    modifier = (
        f" {'+' if spec.modifier >= 0 else '-'} {abs(spec.modifier)}" if spec.modifier else ""
    )
    if spec.count == 1 and not modifier:
        return f"🎲 {total}"
    return f"🎲 {total} ({shown}{modifier})"


class DicePlugin(Plugin):
    rng = random.SystemRandom()

    @command("roll")
    async def roll(self, ctx: CommandContext) -> str:
        """Roll dice: NdM is N dice with M sides, plus K.

        usage: !roll [NdM[+K]], e.g. !roll 2d6+3
        """
        notation = ctx.args[0] if ctx.args else "1d6"
        if len(ctx.args) > 1:
            raise UsageError(USAGE)
        spec = parse_roll(
            notation,
            max_dice=int(self.config.get("max_dice", 100)),
            max_sides=int(self.config.get("max_sides", 1000)),
        )
        faces, total = roll(spec, self.rng)
        return f"{ctx.user.username} rolled {notation}: {describe(spec, faces, total)}"

    @command("flip")
    async def flip(self, ctx: CommandContext) -> str:
        """Flip a coin: heads or tails.

        usage: !flip
        """
        return f"{ctx.user.username} flipped a coin: {self.rng.choice(['heads', 'tails'])}"
