"""``rosey plugin new NAME``: the files of a new plugin folder (pure; the CLI writes them).

What it makes passes ``rosey plugin validate`` and its own test as created: a manifest, a
module with one command whose handler has a docstring, a test through
``rosey.sdk.testing.PluginHarness`` and a ``pytest.ini`` so that ``pytest FOLDER`` runs the
async test wherever the folder is.
"""

from __future__ import annotations

import re
import sys

from rosey.protocol.manifest import NAME_PATTERN

__all__ = ["class_name", "module_name", "name_problem", "scaffold_files"]


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a plugin's name, or None."""
    if re.fullmatch(NAME_PATTERN, name) is None:
        return (
            f"{name!r} is not a plugin name: a lowercase letter, then up to 31 lowercase "
            "letters, digits or '_'"
        )
    return None


def module_name(name: str) -> str:
    """The module file's name: the plugin's, unless that would shadow a standard module."""
    if name in sys.stdlib_module_names or name in ("rosey", "nats", "test", "conftest"):
        return f"{name}_plugin"
    return name


def class_name(name: str) -> str:
    """``my_plugin`` → ``MyPluginPlugin``; ``dice`` → ``DicePlugin``."""
    return "".join(part.capitalize() for part in name.split("_") if part) + "Plugin"


def scaffold_files(name: str) -> dict[str, str]:
    """``{relative path: text}`` of a new plugin ``name`` (checked with :func:`name_problem`)."""
    module, cls = module_name(name), class_name(name)
    manifest = f"""\
name: {name}
version: 0.1.0
description: Replies to !{name} (edit me)
entrypoint: {module}:{cls}
commands: [{name}]
# permissions: []        # grants it needs beyond answering its commands (see the author guide)
# requires_rosey: ">=0.1" # the Rosey versions it runs on (PEP 440), checked at install
"""
    code = f'''\
"""The {name} plugin: ``!{name} [TEXT]``."""

from __future__ import annotations

from rosey.sdk import CommandContext, Plugin, command


class {cls}(Plugin):
    @command("{name}")
    async def {name}(self, ctx: CommandContext) -> str:
        """Say hello, or echo TEXT back: !{name} [TEXT]."""
        text = ctx.arg_text.strip()
        who = ctx.user.username
        return f"{{who}} said: {{text}}" if text else f"hello, {{who}}!"
'''
    test = f'''\
"""Tests of the {name} plugin, through the harness the bot's runtime uses."""

from __future__ import annotations

from pathlib import Path

from rosey.sdk.testing import PluginHarness

HERE = Path(__file__).parent


async def test_{name}_answers() -> None:
    async with PluginHarness.from_folder(HERE) as bot:
        assert await bot.command("!{name}", user="ann") == "hello, ann!"
        assert await bot.command("!{name} hi there", user="bob") == "bob said: hi there"
'''
    ini = """\
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
"""
    return {
        "plugin.yaml": manifest,
        f"{module}.py": code,
        f"test_{name}.py": test,
        "pytest.ini": ini,
    }
