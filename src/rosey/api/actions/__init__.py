"""The registry of management actions: every module in this package that defines ``ACTION``.

Adding an action means adding one module here; chat, NATS and CLI pick it up by name.

Careful: importing the submodules binds their names (``list``, ``help``, ...) in this module's
namespace, shadowing those builtins here; this module therefore calls neither.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from rosey.api.action import Action
from rosey.errors import BadRequest


def _discover() -> dict[str, Action[Any]]:
    found: dict[str, Action[Any]] = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        declared = getattr(module, "ACTION", None)
        if not isinstance(declared, Action):
            raise TypeError(f"{module.__name__} defines no ACTION = action(...)")
        if declared.name in found:
            raise TypeError(f"two modules declare the action {declared.name!r}")
        found[declared.name] = declared
    ordered = sorted(found.values(), key=lambda a: (a.order, a.name))
    return {a.name: a for a in ordered}


#: Every action, in the order usage listings show them.
ACTIONS: dict[str, Action[Any]] = _discover()


def get_action(name: str) -> Action[Any]:
    """The action called ``name``; ``BadRequest`` naming the actions there are otherwise."""
    found = ACTIONS.get(name)
    if found is None:
        shown = name if len(name) <= 40 else name[:37] + "..."
        raise BadRequest(f"unknown action {shown!r}; actions: {', '.join(ACTIONS)}")
    return found
