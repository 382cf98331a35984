"""``rosey schema plugin|config``: the JSON Schema of ``plugin.yaml`` and of the bot config.

Generated from the pydantic models that ``rosey plugin validate`` and ``rosey run`` check with
(``rosey.protocol.manifest_schema.Manifest``, ``rosey.config_schema.BotConfig``), so the schema
states the same rules the checks apply. Published as ``docs/schema/plugin.schema.json`` and
``docs/schema/config.schema.json`` (a test keeps them equal to what this prints); an editor with
the YAML language server completes and checks a file whose first line says::

    # yaml-language-server: $schema=https://.../docs/schema/plugin.schema.json

(or a path relative to the file). The schema cannot say everything the checks do: that the
entrypoint's module and class exist, that no other plugin claims a command, that the
handlers match ``commands``: ``rosey plugin validate`` checks those.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from rosey.cli.common import EXIT_OK

__all__ = ["SCHEMA_FILES", "schema", "schema_text"]

#: The published files, relative to the repository.
SCHEMA_FILES = {
    "plugin": "docs/schema/plugin.schema.json",
    "config": "docs/schema/config.schema.json",
}
_TITLES = {
    "plugin": ("Rosey plugin manifest (plugin.yaml)", "A plugin's folder: DESIGN 2.2."),
    "config": ("Rosey bot configuration (config/plugins.yaml)", "The bot's settings: DESIGN 2.3."),
}


def schema(args: argparse.Namespace) -> int:
    print(schema_text(args.which), end="")
    return EXIT_OK


def schema_text(which: str) -> str:
    """The schema of ``which`` (``plugin`` or ``config``) as the published file holds it."""
    return json.dumps(generate(which), indent=2, ensure_ascii=False) + "\n"


def generate(which: str) -> dict[str, Any]:
    if which == "plugin":
        from rosey.protocol.manifest_schema import Manifest

        body = Manifest.model_json_schema()
    else:
        from rosey.config_schema import BotConfig

        body = BotConfig.model_json_schema()
    title, description = _TITLES[which]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **body,
        "title": title,
        "description": description,
    }
