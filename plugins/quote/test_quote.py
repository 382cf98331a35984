"""Tests of the quote plugin: the book and line parsing (pure), then the plugin on a real bus."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from quotes import Quote, QuoteBook, parse_number, rest_of_line

from rosey.sdk.testing import PluginHarness

HERE = Path(__file__).parent


def book_of(*texts: str) -> QuoteBook:
    book = QuoteBook()
    for text in texts:
        book.add(text, "ann", 0.0)
    return book


def test_numbers_are_never_reused() -> None:
    book = book_of("one", "two")
    book.remove(2)
    assert book.add("three", "bob", 1.0).id == 3
    assert [q.id for q in book.search([])] == [3, 1]


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (["cat"], [3, 1]),
        (["CAT", "hat"], [1]),
        (["dog"], [2]),
        (["bird"], []),
    ],
)
def test_search_needs_every_word_and_ignores_case(words: list[str], expected: list[int]) -> None:
    book = book_of("The cat in the hat", "A dog barks", "cats sleep")
    assert [q.id for q in book.search(words)] == expected


def test_json_round_trip_keeps_numbers() -> None:
    book = book_of("a", "b")
    book.remove(1)
    again = QuoteBook.from_json(json.loads(json.dumps(book.to_json())))
    assert again.get(2) == Quote(2, "b", "ann", 0.0)
    assert again.next_id == 3


@pytest.mark.parametrize("data", [[], {"quotes": "x"}, {"quotes": [{"id": 1}]}, None])
def test_from_json_refuses_what_is_not_a_book(data: object) -> None:
    with pytest.raises(ValueError, match="not a quote book"):
        QuoteBook.from_json(data)


def test_random_of_an_empty_book_is_none() -> None:
    assert QuoteBook().random(random.Random(1)) is None


@pytest.mark.parametrize(
    ("text", "words", "expected"),
    [
        ('!quote add it\'s "so" good', 2, 'it\'s "so" good'),
        ("!quote add    spaced   out ", 2, "spaced   out"),
        ("!quote add", 2, ""),
    ],
)
def test_rest_of_line_keeps_text_as_typed(text: str, words: int, expected: str) -> None:
    assert rest_of_line(text, words) == expected


@pytest.mark.parametrize(
    ("word", "expected"), [("12", 12), ("#7", 7), ("x", None), ("-1", None), ("1" * 12, None)]
)
def test_parse_number(word: str, expected: int | None) -> None:
    assert parse_number(word) == expected


async def test_add_show_search_delete_on_a_real_bus() -> None:
    async with PluginHarness.from_folder(HERE) as bot:
        assert await bot.command("!quote") == "no quotes yet: add one with !quote add TEXT"
        assert await bot.command('!quote add it\'s "fine"', user="ann") == "quote #1 added"
        assert await bot.command("!quote add the cat sat", user="bob") == "quote #2 added"
        # Issue 17 item 9: a quote holding quotes is shown as typed, not as `"it's "fine""`.
        assert await bot.command("!quote 1") == '#1: it\'s "fine" (added by ann)'
        assert await bot.command("!quote search CAT") == '#2: "the cat sat" (added by bob)'
        assert await bot.command("!quote search dog") == "no quote contains 'dog'"
        assert await bot.command("!quote del 2", user="ann") == (
            "only bob, who added quote #2, may delete it"
        )
        assert await bot.command("!quote del 2", user="bob") == "quote #2 deleted"
        assert await bot.command("!quote random") == '#1: it\'s "fine" (added by ann)'


async def test_usage_errors_are_replies_not_errors() -> None:
    async with PluginHarness.from_folder(HERE, config={"max_length": 10}) as bot:
        assert await bot.command("!quote add") == "what should I remember? !quote add TEXT"
        assert await bot.command("!quote add 12345678901") == (
            "that quote is 11 characters; at most 10"
        )
        assert await bot.command("!quote 9") == "there is no quote #9 (the book has 0)"
        assert (await bot.command("!quote frobnicate") or "").startswith("usage: !quote add")
        assert bot.runtime("quote").command_errors == 0


async def test_search_shows_at_most_max_results() -> None:
    async with PluginHarness.from_folder(HERE, config={"max_results": 2}) as bot:
        for n in range(4):
            await bot.command(f"!quote add cat {n}")
        reply = await bot.command("!quote search cat")
        assert reply == (
            '#4: "cat 3" (added by tester) | #3: "cat 2" (added by tester)'
            " (2 more; narrow the search)"
        )


async def test_quotes_survive_a_restart(tmp_path: Path) -> None:
    async with PluginHarness.from_folder(HERE, data_dir=tmp_path) as bot:
        assert await bot.command("!quote add remember me", user="ann") == "quote #1 added"
    assert (tmp_path / "data" / "quote" / "quotes.json").exists()
    async with PluginHarness.from_folder(HERE, data_dir=tmp_path) as bot:
        assert await bot.command("!quote 1") == '#1: "remember me" (added by ann)'
        assert await bot.command("!quote add and me") == "quote #2 added"


async def test_a_damaged_file_is_kept_aside_and_the_plugin_starts(tmp_path: Path) -> None:
    folder = tmp_path / "data" / "quote"
    folder.mkdir(parents=True)
    (folder / "quotes.json").write_text("{not json")
    async with PluginHarness.from_folder(HERE, data_dir=tmp_path) as bot:
        assert await bot.command("!quote add fresh start") == "quote #1 added"
    broken = [p.name for p in folder.iterdir() if p.name.startswith("quotes.json.broken-")]
    assert len(broken) == 1
    assert (folder / broken[0]).read_text() == "{not json"
