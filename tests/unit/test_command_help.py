"""``!help`` text: read from a plugin's source by the bot, and in-process by the SDK (issue 17
item 8). Both views agree on every example plugin, and the decorator's words win over the
docstring."""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

import pytest
import yaml

from rosey.plugins.declared import command_docs, docstring_help, read_commands
from rosey.sdk import CommandContext, Plugin, command

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "folder", sorted(p.parent for p in (REPO / "plugins").glob("*/plugin.yaml")), ids=str
)
def test_source_and_runtime_agree_on_the_example_plugins(folder: Path) -> None:
    manifest = yaml.safe_load((folder / "plugin.yaml").read_text())
    module_name, _, class_name = manifest["entrypoint"].partition(":")
    spec = importlib.util.spec_from_file_location(
        f"_help_check_{folder.name}", folder / f"{module_name}.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(folder))
    sys.modules[spec.name] = module  # dataclasses look their module up
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(folder))
        del sys.modules[spec.name]
    runtime = getattr(module, class_name).command_help()
    source = command_docs(manifest["entrypoint"], folder)
    assert source.complete
    assert {c: (d.help, d.usage) for c, d in source.handlers.items()} == runtime
    assert set(runtime) == set(manifest["commands"])
    assert all(text for text, _ in runtime.values()), "every example command has a help line"


class Dice(Plugin):
    @command("roll", help="Roll dice.", usage="!roll NdM")
    async def roll(self, ctx: CommandContext) -> str:
        """Not this line.

        usage: !roll nothing
        """
        return "4"

    @command("flip")
    async def flip(self, ctx: CommandContext) -> str:
        """Flip a coin.

        Usage: !flip
        """
        return "heads"

    @command("bare")
    async def bare(self, ctx: CommandContext) -> None:
        return None


SOURCE = '''
class Base(Plugin):
    @command("roll", help="Roll dice.", usage="!roll NdM")
    async def roll(self, ctx): ...

class Dice(Base):
    @command("flip")
    async def flip(self, ctx):
        """Flip a coin.

        Usage: !flip
        """

    @command("bare")
    async def bare(self, ctx): ...

class Other(Imported):
    @command("x")
    async def x(self, ctx): ...
'''


def test_the_decorator_wins_then_the_docstring() -> None:
    expected = {"roll": ("Roll dice.", "!roll NdM"), "flip": ("Flip a coin.", "!flip")}
    assert Dice.command_help() == {**expected, "bare": ("", "")}
    found = read_commands(ast.parse(SOURCE), "Dice")
    assert found.complete
    assert {c: (d.help, d.usage) for c, d in found.handlers.items()} == {
        **expected,
        "bare": ("", ""),
    }
    assert found.handlers["bare"].usage_line == "!bare"


def test_a_base_from_another_module_makes_the_picture_incomplete() -> None:
    found = read_commands(ast.parse(SOURCE), "Other")
    assert not found.complete
    assert set(found.handlers) == {"x"}
    assert not read_commands(ast.parse(SOURCE), "Missing").found


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ("", ("", "")),
        ("One line.", ("One line.", "")),
        ("usage: !x N", ("", "!x N")),
        ("Help.\n\nMore.\nUSAGE: !x", ("Help.", "!x")),
    ],
)
def test_docstring_help(doc: str, expected: tuple[str, str]) -> None:
    assert docstring_help(doc) == expected
