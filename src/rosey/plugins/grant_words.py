"""Grants in words an operator understands, and what an update changes (pure).

Before a plugin is installed or updated, the operator sees what it may do beyond answering its
own commands (DESIGN 2.5) and accepts it: on install every grant, on update only the change
(``new: network, chat.send; removed: storage``), each with a sentence saying what it allows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "ALWAYS",
    "GrantChange",
    "describe_grant",
    "grant_change",
    "install_text",
    "update_text",
]

#: What every plugin may do without asking (DESIGN 2.5), said once in every confirmation.
ALWAYS = "answer its own commands, publish its own events and keep files in its own data folder"

_WORDS = {
    "events.message": "read every chat message on every connected platform",
    "events.all": (
        "read every chat event: messages, users joining and leaving, media changes, "
        "on every connected platform"
    ),
    "chat.send": "post messages to chat on its own (timers, announcements), not only replies",
    "storage": "keep data in a key-value store of its own on the message bus",
    "network": "open network connections to other hosts (the internet, your LAN)",
}


def describe_grant(grant: str) -> str:
    """``network`` → ``network: open network connections to other hosts ...``."""
    kind, _, target = grant.partition(":")
    if kind == "plugins.call" and target:
        text = f"run the commands of plugin {target!r} (as if a chat user typed them)"
    elif kind == "plugins.events" and target:
        text = f"receive the events plugin {target!r} publishes"
    else:
        text = _WORDS.get(grant, "an unknown grant (this Rosey does not know it)")
    return f"{grant}: {text}"


@dataclass(frozen=True)
class GrantChange:
    """What an update asks for beyond the installed version, and what it gives up."""

    added: tuple[str, ...]
    removed: tuple[str, ...]

    @property
    def empty(self) -> bool:
        return not self.added and not self.removed

    def summary(self) -> str:
        """``new: network, chat.send; removed: storage`` (or ``no change``)."""
        parts = []
        if self.added:
            parts.append("new: " + ", ".join(self.added))
        if self.removed:
            parts.append("removed: " + ", ".join(self.removed))
        return "; ".join(parts) or "no change"


def grant_change(old: Sequence[str], new: Sequence[str]) -> GrantChange:
    """The grants ``new`` adds to ``old`` and those it drops, each in the order listed."""
    return GrantChange(
        added=tuple(g for g in new if g not in old),
        removed=tuple(g for g in old if g not in new),
    )


def install_text(plugin: str, version: str, grants: Sequence[str]) -> str:
    """What the operator reads before installing ``plugin``."""
    lines = [f"plugin {plugin} {version} may {ALWAYS}."]
    if grants:
        lines.append("It also asks to:")
        lines += [f"  - {describe_grant(g)}" for g in grants]
    else:
        lines.append("It asks for nothing more.")
    return "\n".join(lines)


def update_text(plugin: str, old_version: str, new_version: str, change: GrantChange) -> str:
    """What the operator reads before updating ``plugin``: only what changes."""
    head = f"update plugin {plugin} {old_version} → {new_version}"
    if change.empty:
        return f"{head}: its grants do not change."
    lines = [f"{head}: grants {change.summary()}"]
    if change.added:
        lines.append("It newly asks to:")
        lines += [f"  - {describe_grant(g)}" for g in change.added]
    if change.removed:
        lines.append("It no longer asks to:")
        lines += [f"  - {describe_grant(g)}" for g in change.removed]
    return "\n".join(lines)
