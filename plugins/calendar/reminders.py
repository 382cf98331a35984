"""Reminders: ``!remind in 10m TEXT``, ``!remind list``, ``!remind cancel ID``.

Each pending reminder has a timer task the plugin owns; at the due time it is announced with
``send_chat`` (grant ``chat.send``) where it was set, with a flourish from the markov plugin
(``self.call("markov", "markov")``, grant ``plugins.call:markov``, declared as a dependency).
If markov cannot answer, the reminder is announced without it and the failure logged.

Reminders are kept in ``reminders.json`` in the data folder (written atomically on every
change) with their due time as wall-clock seconds, so after a restart they are rescheduled;
one that fell due while the plugin was not running is announced at once, marked late. The
module is not called ``calendar.py`` on purpose: that would shadow the standard library's.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from rosey.sdk import CommandContext, Plugin, PluginCallError, UsageError, command
from rosey.sdk.files import write_json_atomically

MIN_SECONDS = 1
MAX_SECONDS = 7 * 86400
#: A reminder announced later than this after its due time says it is late.
LATE_AFTER_S = 5.0
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^(?:\d{1,7}[smhd])+$")
_PART = re.compile(r"(\d+)([smhd])")
USAGE = (
    "usage: !remind in 10m TEXT (units s, m, h, d; e.g. 1h30m) | !remind list | !remind cancel ID"
)
FILE_NAME = "reminders.json"


def parse_duration(text: str) -> float:
    """``10m`` → 600, ``1h30m`` → 5400; ``UsageError`` outside 1 s .. 7 d or when not a duration."""
    spec = text.strip().lower()
    if not _DURATION.match(spec):
        raise UsageError(f"{text!r} is not a duration; {USAGE}")
    seconds = sum(int(n) * UNITS[unit] for n, unit in _PART.findall(spec))
    if not MIN_SECONDS <= seconds <= MAX_SECONDS:
        raise UsageError(f"a reminder must be between 1s and 7d away (got {describe(seconds)})")
    return float(seconds)


def describe(seconds: float) -> str:
    """A duration for people: ``5s``, ``9m 58s``, ``1d 2h`` (the two largest units)."""
    left = max(0, round(seconds))
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, left = divmod(left, size)
        if count:
            parts.append(f"{count}{unit}")
    return " ".join(parts[:2]) or "0s"


@dataclass(frozen=True, slots=True)
class Reminder:
    id: int
    due: float
    text: str
    user: str
    platform: str
    channel: str

    def announcement(self, now: float, flourish: str | None) -> str:
        text = f"⏰ {self.user}: {self.text}"
        if now - self.due > LATE_AFTER_S:
            text += f" (late by {describe(now - self.due)}: I was not running)"
        if flourish:
            text += f" — 💭 {flourish[:200]}"
        return text


class ReminderBook:
    """Pending reminders by number; numbers are never reused."""

    def __init__(self, reminders: list[Reminder] | None = None, next_id: int = 1) -> None:
        self._items = {r.id: r for r in reminders or []}
        self.next_id = max([next_id, *(r.id + 1 for r in self._items.values())])

    def __iter__(self) -> Iterator[Reminder]:
        """Soonest first."""
        return iter(sorted(self._items.values(), key=lambda r: (r.due, r.id)))

    def add(self, due: float, text: str, user: str, platform: str, channel: str) -> Reminder:
        reminder = Reminder(self.next_id, due, text, user, platform, channel)
        self._items[reminder.id] = reminder
        self.next_id += 1
        return reminder

    def get(self, reminder_id: int) -> Reminder | None:
        return self._items.get(reminder_id)

    def remove(self, reminder_id: int) -> None:
        self._items.pop(reminder_id, None)

    def count_for(self, user: str) -> int:
        return sum(1 for r in self._items.values() if r.user == user)

    def to_json(self) -> dict[str, Any]:
        return {"next_id": self.next_id, "reminders": [asdict(r) for r in self]}

    @classmethod
    def from_json(cls, data: Any) -> ReminderBook:
        if not isinstance(data, dict) or not isinstance(data.get("reminders"), list):
            raise ValueError("not a reminder file: expected {'next_id': N, 'reminders': [...]}")
        try:
            items = [
                Reminder(
                    int(r["id"]),
                    float(r["due"]),
                    str(r["text"]),
                    str(r["user"]),
                    str(r["platform"]),
                    str(r["channel"]),
                )
                for r in data["reminders"]
            ]
            return cls(items, int(data.get("next_id", 1)))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a reminder file: {exc!r}") from None


def parse_id(word: str) -> int:
    digits = word.removeprefix("#")
    if not digits.isdigit() or len(digits) > 9:
        raise UsageError(f"{word!r} is not a reminder number; see !remind list")
    return int(digits)


class CalendarPlugin(Plugin):
    async def on_start(self) -> None:
        self.path = self.data_dir / FILE_NAME
        self._timers: dict[int, asyncio.Task[None]] = {}
        try:
            self.book = ReminderBook.from_json(json.loads(self.path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            self.book = ReminderBook()
        except ValueError as exc:  # also json.JSONDecodeError
            aside = self.path.with_name(f"{FILE_NAME}.broken-{int(time.time())}")
            os.replace(self.path, aside)
            self.log.error("%s is damaged (%s); moved it to %s", self.path, exc, aside.name)
            self.book = ReminderBook()
        for reminder in self.book:
            self._schedule(reminder)
        self.log.info("%d reminder(s) rescheduled", len(self._timers))

    async def on_stop(self) -> None:
        timers = list(self._timers.values())
        for task in timers:
            task.cancel()
        await asyncio.gather(*timers, return_exceptions=True)

    # -- commands -------------------------------------------------------------------------

    @command("remind")
    async def remind(self, ctx: CommandContext) -> str:
        """Remind you of something later, in this channel.

        usage: !remind in 10m TEXT | !remind list | !remind cancel ID
        """
        sub = ctx.args[0].lower() if ctx.args else ""
        if sub == "list":
            return self._list(ctx)
        if sub == "cancel" and len(ctx.args) == 2:
            return self._cancel(parse_id(ctx.args[1]), ctx)
        if sub == "in" and len(ctx.args) >= 3:
            delay = parse_duration(ctx.args[1])
            # The raw line keeps the text as typed (ctx.args lost any quotes).
            return self._add(delay, ctx.text.split(None, 3)[3].strip(), ctx)
        raise UsageError(USAGE)

    def _add(self, delay: float, text: str, ctx: CommandContext) -> str:
        max_text = int(self.config.get("max_text", 300))
        if len(text) > max_text:
            raise UsageError(f"that is {len(text)} characters; a reminder holds {max_text}")
        most = int(self.config.get("max_per_user", 10))
        if self.book.count_for(ctx.user.username) >= most:
            raise UsageError(f"you have {most} reminders already; cancel one first")
        reminder = self.book.add(
            time.time() + delay, text, ctx.user.username, ctx.platform, ctx.channel
        )
        self._save()
        self._schedule(reminder)
        return f"reminder #{reminder.id} set for {describe(delay)} from now"

    def _list(self, ctx: CommandContext) -> str:
        here = [r for r in self.book if (r.platform, r.channel) == (ctx.platform, ctx.channel)]
        if not here:
            return "no reminders here; set one: !remind in 10m stretch"
        now = time.time()
        shown = [f"#{r.id} in {describe(r.due - now)} for {r.user}: {r.text}" for r in here[:10]]
        more = f" (+{len(here) - 10} more)" if len(here) > 10 else ""
        return " | ".join(shown) + more

    def _cancel(self, reminder_id: int, ctx: CommandContext) -> str:
        reminder = self.book.get(reminder_id)
        if reminder is None or (reminder.platform, reminder.channel) != (ctx.platform, ctx.channel):
            raise UsageError(f"there is no reminder #{reminder_id} here; see !remind list")
        if reminder.user != ctx.user.username:
            raise UsageError(f"only {reminder.user} may cancel reminder #{reminder_id}")
        timer = self._timers.pop(reminder_id, None)
        if timer is not None:
            timer.cancel()
        self.book.remove(reminder_id)
        self._save()
        return f"reminder #{reminder_id} cancelled"

    # -- timers ---------------------------------------------------------------------------

    def _save(self) -> None:
        write_json_atomically(self.path, self.book.to_json())

    def _schedule(self, reminder: Reminder) -> None:
        task = asyncio.create_task(self._fire(reminder), name=f"reminder {reminder.id}")
        self._timers[reminder.id] = task
        task.add_done_callback(lambda t: self._fired(reminder.id, t))

    def _fired(self, reminder_id: int, task: asyncio.Task[None]) -> None:
        if self._timers.get(reminder_id) is task:
            del self._timers[reminder_id]
        if not task.cancelled() and task.exception() is not None:
            self.log.error("reminder #%d failed", reminder_id, exc_info=task.exception())

    async def _fire(self, reminder: Reminder) -> None:
        await asyncio.sleep(max(0.0, reminder.due - time.time()))
        flourish = await self._flourish()
        await self.send_chat(
            reminder.platform, reminder.channel, reminder.announcement(time.time(), flourish)
        )
        # Forgotten only once announced: a stop before this line announces it after restart.
        self.book.remove(reminder.id)
        self._save()

    async def _flourish(self) -> str | None:
        """A line from markov, or None: a reminder never waits on or fails because of it."""
        timeout = float(self.config.get("flourish_timeout_s", 2))
        try:
            return await self.call("markov", "markov", timeout=timeout)
        except PluginCallError as exc:
            self.log.warning("announcing without a flourish: %s", exc)
            return None
