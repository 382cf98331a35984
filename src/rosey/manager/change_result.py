"""``ChangeResult``: what install, update, rollback and remove answer (their result shape).

A module of its own so that the actions can declare it without importing the installer, which
(with the plugin store, archive unpacking and install rules) an idle manager does not load.
"""

from __future__ import annotations

from typing import Any, TypedDict

__all__ = ["ChangeResult"]


class ChangeResult(TypedDict):
    """The result of install, update, rollback and remove."""

    plugin: str
    action: str
    version: str | None
    previous: str | None
    #: What happened, in lines for people (chat and CLI show them).
    report: list[str]
    #: The plugin's STATUS afterwards (None once removed).
    status: dict[str, Any] | None
