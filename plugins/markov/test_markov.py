"""Tests of the markov plugin: the chain (pure), then learning from chat on a real bus."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
from pathlib import Path

import pytest
from markov_chain import Chain, MarkovPlugin

from rosey.bus.client import Message
from rosey.protocol import subjects
from rosey.sdk.testing import PluginHarness

HERE = Path(__file__).parent
LINES = ["the cat sat on the mat", "a dog sat on a log", "the cat ate the fish"]
TAUGHT = {w for line in LINES for w in line.split()}


def test_generates_only_learned_transitions() -> None:
    chain = Chain()
    for line in LINES:
        assert chain.learn(line)
    rng = random.Random(3)
    pairs = {pair for line in LINES for pair in itertools.pairwise(line.split())}
    for _ in range(50):
        words = chain.generate(rng).split()
        assert words
        assert words[0] in {"the", "a"}
        assert all(pair in pairs for pair in itertools.pairwise(words))


def test_seed_starts_the_line_and_must_be_known() -> None:
    chain = Chain()
    chain.learn("Hello there friend")
    assert chain.generate(random.Random(1), seed="hello") == "hello there friend"
    with pytest.raises(KeyError):
        chain.generate(random.Random(1), seed="nope")


def test_max_words_cuts_a_loop() -> None:
    chain = Chain()
    chain.learn("la la la la")
    assert len(chain.generate(random.Random(1), max_words=7).split()) <= 7


@pytest.mark.parametrize("text", ["", "   ", "x" * 41])
def test_lines_without_usable_words_teach_nothing(text: str) -> None:
    chain = Chain()
    assert chain.learn(text) is False
    assert (len(chain), chain.lines) == (0, 0)


def test_memory_is_bounded_and_forgets_the_least_recent_word() -> None:
    chain = Chain(max_states=3, max_followers=2)
    chain.learn("a b c")
    chain.learn("a x")  # "a" is used again, so "b" is now the least recent
    chain.learn("d")
    assert len(chain) == 3
    assert not chain.knows("b")
    assert chain.knows("a")
    assert chain.knows("d")


def test_followers_are_bounded_and_the_rarest_go() -> None:
    chain = Chain(max_states=10, max_followers=2)
    chain.learn("a b")
    chain.learn("a b")
    chain.learn("a c")
    chain.learn("a d")  # "c" (seen once, fewer than "b") makes room for "d"
    assert chain.to_json()["chain"]["a"] == {"b": 2, "d": 1}


def test_json_round_trip_and_bounds_on_load() -> None:
    chain = Chain()
    for line in LINES:
        chain.learn(line)
    data = json.loads(json.dumps(chain.to_json()))
    assert Chain.from_json(data).to_json() == chain.to_json()
    small = Chain.from_json(data, max_states=2)
    assert len(small) == 2


@pytest.mark.parametrize("data", [None, [], {"chain": []}, {"chain": {"a": 3}}])
def test_from_json_refuses_what_is_not_a_chain(data: object) -> None:
    with pytest.raises(ValueError, match="not a markov chain"):
        Chain.from_json(data)


async def test_learns_from_chat_and_babbles() -> None:
    async with PluginHarness.from_folder(HERE) as bot:
        assert (await bot.command("!markov") or "").startswith("I have not learned enough yet")
        for line in LINES:
            await bot.say(line, user="ann")
        await bot.say("!quote add not conversation")
        await bot.wait_handled(len(LINES) + 1)
        plugin = bot.plugin
        assert isinstance(plugin, MarkovPlugin)
        assert plugin.chain.lines == len(LINES)  # the command line was not learned
        reply = await bot.command("!markov")
        assert reply
        assert set(reply.split()) <= TAUGHT
        seeded = await bot.command("!markov dog")
        assert (seeded or "").startswith("dog sat on")
        assert await bot.command("!markov unicorn") == (
            "I have never seen 'unicorn'; try !markov alone"
        )
        assert bot.runtime("markov").command_errors == 0


async def test_does_not_learn_its_own_babble_or_ignored_users() -> None:
    config = {"min_lines": 1, "ignore_users": ["Rosey"]}
    async with PluginHarness.from_folder(HERE, config=config) as bot:
        await bot.say("hello big world")
        await bot.wait_handled(1)
        said = await bot.command("!markov")
        assert said
        await bot.say(said, user="someone-echoing")
        await bot.say("I am the bot speaking", user="rosey")
        await bot.wait_handled(3)
        plugin = bot.plugin
        assert isinstance(plugin, MarkovPlugin)
        assert plugin.chain.lines == 1


async def test_what_it_learned_is_saved_periodically_and_survives_a_restart(
    tmp_path: Path,
) -> None:
    config = {"save_interval_s": 0.05}
    async with PluginHarness.from_folder(HERE, config=config, data_dir=tmp_path) as bot:
        assert bot.bus is not None
        saved: asyncio.Queue[dict[str, int]] = asyncio.Queue()

        async def on_saved(msg: Message) -> None:
            await saved.put(msg.json())

        await bot.bus.subscribe(subjects.plugin_event("markov", "saved"), on_saved)
        await bot.bus.flush()
        for line in LINES:
            await bot.say(line)
        await bot.wait_handled(len(LINES))
        async with asyncio.timeout(10):
            while (await saved.get())["lines"] < len(LINES):
                pass
    assert (tmp_path / "data" / "markov" / "markov.json").exists()
    async with PluginHarness.from_folder(HERE, data_dir=tmp_path) as bot:
        reply = await bot.command("!markov")
        assert set((reply or "").split()) <= TAUGHT


async def test_learning_is_saved_on_stop_without_waiting_for_the_timer(tmp_path: Path) -> None:
    async with PluginHarness.from_folder(HERE, data_dir=tmp_path) as bot:
        for line in LINES:
            await bot.say(line)
        await bot.wait_handled(len(LINES))
    data = json.loads((tmp_path / "data" / "markov" / "markov.json").read_text())
    assert data["lines"] == len(LINES)


async def test_a_damaged_file_is_kept_aside_and_the_plugin_starts(tmp_path: Path) -> None:
    folder = tmp_path / "data" / "markov"
    folder.mkdir(parents=True)
    (folder / "markov.json").write_text('{"chain": []}')
    async with PluginHarness.from_folder(HERE, data_dir=tmp_path, config={"min_lines": 1}) as bot:
        await bot.say("fresh start")
        await bot.wait_handled(1)
        assert await bot.command("!markov fresh") == "fresh start"
    broken = [p for p in folder.iterdir() if p.name.startswith("markov.json.broken-")]
    assert [p.read_text() for p in broken] == ['{"chain": []}']


async def test_a_plugin_caller_gets_no_reply_rather_than_an_excuse() -> None:
    # markov calling itself stands in for a plugin caller; without the grant
    # plugins.call:markov the bot's broker would refuse the call, hence no grant enforcement.
    async with PluginHarness.from_folder(HERE, enforce_grants=False) as bot:
        assert await bot.plugin.call("markov", "markov") is None
