"""The JSON Schemas in docs/schema/ are the models' (issue 17 item 15).

``rosey plugin validate`` and ``rosey run`` check with the pydantic models; the published
schemas are generated from them, so an editor pointed at a schema applies the same rules. A
model change without regenerating fails here: ``ROSEY_REGEN_DOCS=1 .venv/bin/pytest
tests/unit/test_schema_files.py`` rewrites the files.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from rosey.cli.schema import SCHEMA_FILES, generate, schema_text

REPO = Path(__file__).resolve().parents[2]
REGENERATE = os.environ.get("ROSEY_REGEN_DOCS") == "1"


@pytest.mark.parametrize("which", sorted(SCHEMA_FILES))
def test_published_schema_is_the_generated_one(which: str) -> None:
    path = REPO / SCHEMA_FILES[which]
    if REGENERATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(schema_text(which))
    assert path.read_text() == schema_text(which), (
        f"{SCHEMA_FILES[which]} is not the schema of the current model "
        "(ROSEY_REGEN_DOCS=1 regenerates it)"
    )


def test_the_schema_states_the_models_rules() -> None:
    """Spot checks that the schema carries what validate enforces: required keys, no unknown
    keys, patterns and ranges."""
    plugin = generate("plugin")
    assert set(plugin["required"]) == {"name", "version", "entrypoint"}
    assert plugin["additionalProperties"] is False
    assert plugin["properties"]["name"]["pattern"] == r"^[a-z][a-z0-9_]{0,31}$"
    limits = plugin["$defs"]["Limits"]["properties"]["memory_mb"]
    assert (limits["minimum"], limits["maximum"]) == (16, 1024 * 1024)
    config = generate("config")
    assert config["additionalProperties"] is False
    assert "limits_max" in config["properties"]


def test_example_manifests_point_editors_at_the_schema() -> None:
    """Each example plugin's first line names the schema by a path that exists."""
    for manifest in sorted((REPO / "plugins").glob("*/plugin.yaml")):
        first = manifest.read_text().splitlines()[0]
        prefix = "# yaml-language-server: $schema="
        assert first.startswith(prefix), manifest
        target = (manifest.parent / first.removeprefix(prefix)).resolve()
        assert target == (REPO / SCHEMA_FILES["plugin"]).resolve(), manifest
        assert isinstance(yaml.safe_load(manifest.read_text()), dict)
    assert json.loads((REPO / SCHEMA_FILES["plugin"]).read_text())["title"]
