"""The plugin SDK: everything a plugin process imports (DESIGN 2.7).

Kept lean on purpose: its import time is every plugin's start time.
"""

from rosey.sdk.plugin import (
    CommandContext,
    Plugin,
    PluginCallError,
    UsageError,
    User,
    command,
    on_event,
)

__all__ = [
    "CommandContext",
    "Plugin",
    "PluginCallError",
    "UsageError",
    "User",
    "command",
    "on_event",
]
