"""The SDK's public surface is curated.

That the plugin process's import path stays lean is checked by a real process in
``tests/integration/test_architecture.py`` and statically in ``.importlinter``.
"""

from __future__ import annotations

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
