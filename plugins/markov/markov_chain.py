"""Markov babble: learns word transitions from chat lines, says ``!markov [word]``.

:class:`Chain` is the pure part: a first-order word chain with bounded memory (at most
``max_states`` words, each with at most ``max_followers`` next words). The plugin feeds it from
``rosey.events.message`` (grant ``events.message``), skipping commands and its own babble, and
saves it to ``markov.json`` in its data folder every ``save_interval_s`` when something changed,
and on stop. After each save it publishes ``rosey.plugins.markov.saved``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import random
import time
from typing import Any

from rosey.sdk import CommandContext, Plugin, UsageError, command, on_event
from rosey.sdk.files import write_atomically

#: The state before a line's first word, and the follower meaning "the line ends here".
EDGE = ""
MAX_LINE_WORDS = 50
MAX_WORD_CHARS = 40
FILE_NAME = "markov.json"
#: What ``ctx.platform`` says when another plugin runs our command with ``self.call``.
CALLED_BY_PLUGIN = "plugin"


class Chain:
    """Word → {next word: count}; keys lowercase, next words as typed."""

    def __init__(self, *, max_states: int = 5000, max_followers: int = 50) -> None:
        if max_states < 2 or max_followers < 1:
            raise ValueError("max_states must be at least 2 and max_followers at least 1")
        self.max_states = max_states
        self.max_followers = max_followers
        self.lines = 0
        self._next: dict[str, dict[str, int]] = {EDGE: {}}

    def __len__(self) -> int:
        """How many words it knows."""
        return len(self._next) - 1

    def knows(self, word: str) -> bool:
        return bool(word) and word.lower() in self._next

    def learn(self, text: str) -> bool:
        """Learn one line; False if it held no usable words."""
        words = [w for w in text.split()[:MAX_LINE_WORDS] if len(w) <= MAX_WORD_CHARS]
        if not words:
            return False
        previous = EDGE
        for word in [*words, EDGE]:
            self._count(previous, word)
            previous = word.lower()
        self.lines += 1
        return True

    def _count(self, state: str, follower: str, times: int = 1) -> None:
        """Count ``state → follower``; when full, forget the least recently learned word or the
        rarest follower."""
        # Re-inserting keeps the dict ordered from least to most recently learned.
        followers = self._next.pop(state, None)
        if followers is None:
            followers = {}
            if len(self._next) - 1 >= self.max_states:  # EDGE is always there, not a word
                del self._next[next(k for k in self._next if k != EDGE)]
        self._next[state] = followers
        if follower not in followers and len(followers) >= self.max_followers:
            del followers[min(followers, key=followers.__getitem__)]
        followers[follower] = followers.get(follower, 0) + times

    def generate(self, rng: random.Random, *, seed: str | None = None, max_words: int = 30) -> str:
        """A line of at most ``max_words`` words; it starts with ``seed`` (known) if given."""
        words: list[str] = []
        state = EDGE
        if seed is not None:
            if not self.knows(seed):
                raise KeyError(seed)
            words.append(seed)
            state = seed.lower()
        while len(words) < max_words:
            followers = self._next.get(state)
            if not followers:
                break
            word = rng.choices(list(followers), weights=list(followers.values()))[0]
            if word == EDGE:
                break
            words.append(word)
            state = word.lower()
        return " ".join(words)

    def to_json(self) -> dict[str, Any]:
        return {"version": 1, "lines": self.lines, "chain": self._next}

    @classmethod
    def from_json(cls, data: Any, *, max_states: int = 5000, max_followers: int = 50) -> Chain:
        """A chain saved by :meth:`to_json`, cut to the given bounds; ``ValueError`` if not one."""
        if not isinstance(data, dict) or not isinstance(data.get("chain"), dict):
            raise ValueError("not a markov chain: expected {'lines': N, 'chain': {...}}")
        chain = cls(max_states=max_states, max_followers=max_followers)
        try:
            chain.lines = int(data.get("lines", 0))
            for state, followers in data["chain"].items():
                for follower, count in dict(followers).items():
                    chain._count(str(state), str(follower), max(1, int(count)))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"not a markov chain: {exc}") from None
        return chain


def normalize(text: str) -> str:
    return " ".join(text.split()).casefold()


class MarkovPlugin(Plugin):
    rng = random.SystemRandom()

    async def on_start(self) -> None:
        self.path = self.data_dir / FILE_NAME
        self.chain = self._load()
        self.dirty = False
        # Our own recent babble: on networks that echo the bot's lines we must not learn them.
        self._said: collections.deque[str] = collections.deque(maxlen=50)
        self._ignore_users = {u.casefold() for u in self.config.get("ignore_users") or []}
        interval = float(self.config.get("save_interval_s", 60))
        self._stopping = asyncio.Event()
        self._saver = asyncio.create_task(self._save_every(interval), name="markov-save")
        self.log.info("knows %d word(s) from %d line(s)", len(self.chain), self.chain.lines)

    async def on_stop(self) -> None:
        # Asked, not cancelled: a save in progress finishes before the last one starts.
        self._stopping.set()
        await self._saver
        if self.dirty:
            await self.save()

    def _bounds(self) -> dict[str, int]:
        return {
            "max_states": int(self.config.get("max_states", 5000)),
            "max_followers": int(self.config.get("max_followers", 50)),
        }

    def _load(self) -> Chain:
        try:
            data = json.loads(self.path.read_bytes())
            return Chain.from_json(data, **self._bounds())
        except FileNotFoundError:
            return Chain(**self._bounds())
        except ValueError as exc:  # also json.JSONDecodeError
            # Keep the damaged file for a human to look at, and learn again from scratch.
            aside = self.path.with_name(f"{FILE_NAME}.broken-{int(time.time())}")
            os.replace(self.path, aside)
            self.log.error("%s is damaged (%s); moved it to %s", self.path, exc, aside.name)
            return Chain(**self._bounds())

    async def save(self) -> None:
        """Write what it learned (serialized here, written off the event loop), then announce it."""
        data = json.dumps(self.chain.to_json(), ensure_ascii=False).encode()
        self.dirty = False
        try:
            await asyncio.to_thread(write_atomically, self.path, data)
        except BaseException:
            self.dirty = True
            raise
        await self.publish("saved", {"words": len(self.chain), "lines": self.chain.lines})

    async def _save_every(self, interval: float) -> None:
        """Save every ``interval`` seconds if something was learned, until ``on_stop``."""
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._stopping.wait()
            if self.dirty and not self._stopping.is_set():
                try:
                    await self.save()
                except Exception:  # keep saving later; on_stop tries once more
                    self.log.exception("cannot save %s", self.path)

    @on_event("rosey.events.message")
    async def heard(self, event: dict[str, Any]) -> None:
        text, user = event.get("text"), event.get("user")
        if not isinstance(text, str) or text.lstrip().startswith("!"):
            return  # commands are not conversation
        username = str(user.get("username", "")) if isinstance(user, dict) else ""
        if username.casefold() in self._ignore_users or normalize(text) in self._said:
            return
        if self.chain.learn(text):
            self.dirty = True

    @command("markov")
    async def markov(self, ctx: CommandContext) -> str | None:
        """Say something new in the style of this chat.

        usage: !markov [word]
        """
        min_lines = int(self.config.get("min_lines", 3))
        if len(ctx.args) > 1:
            raise UsageError("usage: !markov [word]")
        if self.chain.lines < min_lines:
            if ctx.platform == CALLED_BY_PLUGIN:
                return None  # a plugin asking for a flourish wants nothing rather than excuses
            raise UsageError(
                f"I have not learned enough yet ({self.chain.lines} of {min_lines} lines): "
                "keep talking"
            )
        seed = ctx.args[0] if ctx.args else None
        try:
            line = self.chain.generate(
                self.rng, seed=seed, max_words=int(self.config.get("max_words", 30))
            )
        except KeyError:
            raise UsageError(f"I have never seen {seed!r}; try !markov alone") from None
        self._said.append(normalize(line))
        return line
