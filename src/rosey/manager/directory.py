"""The command directory: which plugin answers which ``!command``, and why one cannot now.

What the router asks the manager (``rosey.router.router.CommandDirectory``). A command belongs
to the first plugin that claims it; a plugin added later (``rescan``) that claims a taken
command is refused by the manager, which asks :meth:`Commands.taken` first.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from rosey.lifecycle.states import UP
from rosey.manager.record import PluginRecord

__all__ = ["Commands", "unavailable_reason"]


class Commands:
    """``{command: plugin}`` of every known plugin."""

    def __init__(self) -> None:
        self._owners: dict[str, str] = {}

    def claim(self, plugin: str, commands: Iterable[str]) -> None:
        for command in commands:
            self._owners[command] = plugin

    def release(self, plugin: str) -> None:
        """Forget every command ``plugin`` claimed (its manifest changed: it claims anew)."""
        self._owners = {c: p for c, p in self._owners.items() if p != plugin}

    def taken(self, commands: Iterable[str]) -> dict[str, str]:
        """Those of ``commands`` another plugin already answers, with that plugin."""
        return {c: self._owners[c] for c in commands if c in self._owners}

    def owner(self, command: str) -> str | None:
        return self._owners.get(command)

    def as_dict(self) -> dict[str, str]:
        return dict(self._owners)


def unavailable_reason(record: PluginRecord | None, now: float | None = None) -> str | None:
    """None when the plugin can take commands, else why not, in words for chat."""
    if record is None:
        return "it is not installed"
    if record.state in UP:
        return None
    why = record.last_error.splitlines()[0] if record.last_error else ""
    why = why.removesuffix("; last stderr lines:")
    text = f"it is {record.state}" + (f": {why}" if why else "")
    if record.next_restart_at is not None:
        now = time.monotonic() if now is None else now
        text += f"; restarting in {max(0.0, record.next_restart_at - now):.0f} s"
    return text
