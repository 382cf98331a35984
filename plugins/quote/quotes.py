"""Quotes: ``!quote add TEXT``, ``!quote [random]``, ``!quote N``, ``!quote search WORDS``.

The quote book lives in memory (:class:`QuoteBook`, pure, no I/O) and in ``quotes.json`` in the
plugin's data folder, rewritten atomically (temporary file + ``os.replace``) after every change,
so a crash mid-write leaves the previous book intact and quotes survive restarts.
"""

from __future__ import annotations

import json
import os
import random
import time
from dataclasses import asdict, dataclass
from typing import Any

from rosey.sdk import CommandContext, Plugin, UsageError, command
from rosey.sdk.files import write_json_atomically

USAGE = "usage: !quote add TEXT | !quote [random] | !quote N | !quote search WORDS | !quote del N"
FILE_NAME = "quotes.json"


@dataclass(frozen=True, slots=True)
class Quote:
    id: int
    text: str
    by: str
    added: float

    def show(self) -> str:
        # A text that holds its own quotes (`"so good" ann said`) is shown as typed: wrapping
        # it again would read `""so good" ann said"`.
        text = self.text if '"' in self.text else f'"{self.text}"'
        return f"#{self.id}: {text} (added by {self.by})"


class QuoteBook:
    """The quotes, numbered from 1; numbers are never reused, even after a deletion."""

    def __init__(self, quotes: list[Quote] | None = None, next_id: int = 1) -> None:
        self._quotes = {q.id: q for q in quotes or []}
        self.next_id = max([next_id, *(q.id + 1 for q in self._quotes.values())])

    def __len__(self) -> int:
        return len(self._quotes)

    def add(self, text: str, by: str, added: float) -> Quote:
        quote = Quote(self.next_id, text, by, added)
        self._quotes[quote.id] = quote
        self.next_id += 1
        return quote

    def get(self, quote_id: int) -> Quote | None:
        return self._quotes.get(quote_id)

    def remove(self, quote_id: int) -> Quote | None:
        return self._quotes.pop(quote_id, None)

    def random(self, rng: random.Random) -> Quote | None:
        return rng.choice(list(self._quotes.values())) if self._quotes else None

    def search(self, words: list[str]) -> list[Quote]:
        """Quotes containing every word (case-insensitive), newest first."""
        wanted = [w.casefold() for w in words]
        found = [q for q in self._quotes.values() if all(w in q.text.casefold() for w in wanted)]
        return sorted(found, key=lambda q: q.id, reverse=True)

    def to_json(self) -> dict[str, Any]:
        return {"next_id": self.next_id, "quotes": [asdict(q) for q in self._quotes.values()]}

    @classmethod
    def from_json(cls, data: Any) -> QuoteBook:
        """The book saved by :meth:`to_json`; ``ValueError`` if it is not one."""
        if not isinstance(data, dict) or not isinstance(data.get("quotes"), list):
            raise ValueError("not a quote book: expected {'next_id': N, 'quotes': [...]}")
        try:
            quotes = [
                Quote(int(q["id"]), str(q["text"]), str(q["by"]), float(q["added"]))
                for q in data["quotes"]
            ]
            return cls(quotes, int(data.get("next_id", 1)))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a quote book: {exc!r}") from None


def rest_of_line(text: str, words_before: int) -> str:
    """The text after the first ``words_before`` words, as typed: ``!quote add "hi"`` → ``"hi"``.

    ``ctx.args`` is split like a shell (quotes removed); a quote must be kept as typed.
    """
    parts = text.split(None, words_before)
    return parts[words_before].strip() if len(parts) > words_before else ""


def parse_number(word: str) -> int | None:
    """``12`` or ``#12`` → 12; None if it is not a quote number."""
    digits = word.removeprefix("#")
    return int(digits) if digits.isdigit() and len(digits) <= 9 else None


class QuotePlugin(Plugin):
    rng = random.SystemRandom()

    async def on_start(self) -> None:
        self.path = self.data_dir / FILE_NAME
        self.book = self._load()
        self.log.info("%d quote(s) loaded from %s", len(self.book), self.path)

    def _load(self) -> QuoteBook:
        try:
            return QuoteBook.from_json(json.loads(self.path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return QuoteBook()
        except ValueError as exc:  # also json.JSONDecodeError
            # Keep the damaged file for a human to look at; start with an empty book.
            aside = self.path.with_name(f"{FILE_NAME}.broken-{int(time.time())}")
            os.replace(self.path, aside)
            self.log.error("%s is damaged (%s); moved it to %s", self.path, exc, aside.name)
            return QuoteBook()

    def _save(self) -> None:
        write_json_atomically(self.path, self.book.to_json())

    @command("quote")
    async def quote(self, ctx: CommandContext) -> str:
        """Remember quotes and show them again.

        usage: !quote add TEXT | !quote [random] | !quote N | !quote search WORDS | !quote del N
        """
        sub = ctx.args[0].lower() if ctx.args else "random"
        if sub == "add":
            return self._add(rest_of_line(ctx.text, 2), ctx.user.username)
        if sub == "random":
            found = self.book.random(self.rng)
            return found.show() if found else "no quotes yet: add one with !quote add TEXT"
        if sub == "search":
            return self._search(list(ctx.args[1:]))
        if sub in ("del", "delete"):
            return self._delete(ctx.args[1:], ctx.user.username)
        number = parse_number(sub)
        if number is not None and len(ctx.args) == 1:
            found = self.book.get(number)
            if found is None:
                raise UsageError(f"there is no quote #{number} (the book has {len(self.book)})")
            return found.show()
        raise UsageError(USAGE)

    def _add(self, text: str, by: str) -> str:
        max_length = int(self.config.get("max_length", 400))
        if not text:
            raise UsageError("what should I remember? !quote add TEXT")
        if len(text) > max_length:
            raise UsageError(f"that quote is {len(text)} characters; at most {max_length}")
        if len(self.book) >= int(self.config.get("max_quotes", 10000)):
            raise UsageError("the quote book is full; delete some with !quote del N")
        added = self.book.add(text, by, time.time())
        self._save()
        return f"quote #{added.id} added"

    def _search(self, words: list[str]) -> str:
        if not words:
            raise UsageError("search for what? !quote search WORDS")
        found = self.book.search(words)
        if not found:
            return f"no quote contains {' '.join(words)!r}"
        shown = found[: int(self.config.get("max_results", 3))]
        more = (
            f" ({len(found) - len(shown)} more; narrow the search)"
            if len(found) > len(shown)
            else ""
        )
        return " | ".join(q.show() for q in shown) + more

    def _delete(self, args: tuple[str, ...], by: str) -> str:
        number = parse_number(args[0]) if len(args) == 1 else None
        if number is None:
            raise UsageError("which one? !quote del N")
        found = self.book.get(number)
        if found is None:
            raise UsageError(f"there is no quote #{number}")
        if found.by != by:
            raise UsageError(f"only {found.by}, who added quote #{number}, may delete it")
        self.book.remove(number)
        self._save()
        return f"quote #{number} deleted"
