"""The SDK's public surface is curated, and the plugin process's import path stays lean."""

from __future__ import annotations

import subprocess
import sys

import rosey.sdk

PUBLIC = [
    "CommandContext",
    "Plugin",
    "PluginCallError",
    "UsageError",
    "User",
    "command",
    "on_event",
]


def test_all_is_exactly_the_curated_list() -> None:
    assert sorted(rosey.sdk.__all__) == sorted(PUBLIC)
    for name in PUBLIC:
        assert getattr(rosey.sdk, name).__module__.startswith("rosey.sdk")


def test_plugin_has_the_design_attributes() -> None:
    for name in ("on_start", "on_stop", "publish", "send_chat", "call", "storage"):
        assert callable(getattr(rosey.sdk.Plugin, name))


def test_runner_import_path_has_no_heavy_modules() -> None:
    """Every plugin pays for what the runner imports: no pydantic, yaml, psutil or manager."""
    code = (
        "import sys, rosey.sdk.runner, rosey.sdk;"
        "heavy = [m for m in ('pydantic', 'yaml', 'psutil', 'rosey.manager', 'rosey.config',"
        " 'rosey.bus.server', 'rosey.plugins.manifest') if m in sys.modules];"
        "print(','.join(heavy))"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == ""
