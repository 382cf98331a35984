"""Test kit: a double and the humans of one test, all stopped at the end (no task left behind)."""

from __future__ import annotations

from types import TracebackType
from typing import Any

from cytube.double import CytubeDouble
from cytube.human import Human

__all__ = ["World"]


class World:
    """``async with World() as world``: doubles started on demand, humans closed at the end."""

    def __init__(self) -> None:
        self.doubles: list[CytubeDouble] = []
        self.humans: list[Human] = []

    async def double(self, **options: Any) -> CytubeDouble:
        double = CytubeDouble(**options)
        await double.start()
        self.doubles.append(double)
        return double

    def human(self, double: CytubeDouble) -> Human:
        human = Human(double.url)
        self.humans.append(human)
        return human

    async def enter(
        self, double: CytubeDouble, channel: str, name: str, password: str | None = None
    ) -> Human:
        return await self.human(double).enter(channel, name, password)

    async def __aenter__(self) -> World:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for human in self.humans:
            await human.close()
        for double in self.doubles:
            await double.stop()
