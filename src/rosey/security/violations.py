"""Permission violations, learned from the broker's own log (which a plugin cannot forge).

nats-server logs every refused publish or subscribe with the authenticated user, e.g.::

    [ERR] 127.0.0.1:59790 - cid:5 - "v2.16.0:python3:plugin:dice" - "$G/user:plugin_dice"
      - Publish Violation - Subject "rosey.manager.stop"

The client name is chosen by the client and ignored here; the ``user:`` part is the identity
the broker authenticated. ``parse_violation`` is pure; ``ViolationPolicy`` decides when a plugin
has misbehaved often enough to be disabled.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field

from rosey.security.identities import plugin_of_user

_LINE = re.compile(
    r'"\$?[^"/]*/user:(?P<user>[^"]+)" - (?P<kind>Publish|Subscription) Violation - '
    r'Subject "(?P<subject>[^"]*)"'
)


@dataclass(frozen=True)
class Violation:
    plugin: str
    kind: str  # "publish" or "subscribe"
    subject: str
    detail: str


def parse_violation(line: str) -> Violation | None:
    """The violation a server log line reports, if it is one by a plugin's identity."""
    match = _LINE.search(line)
    if match is None:
        return None
    plugin = plugin_of_user(match.group("user"))
    if plugin is None:
        return None
    kind = "publish" if match.group("kind") == "Publish" else "subscribe"
    subject = match.group("subject")
    return Violation(plugin, kind, subject, f"the broker refused to {kind} {subject!r}")


@dataclass
class ViolationPolicy:
    """More than ``max_violations`` within ``window_s`` → disable (``max_violations`` 0: never)."""

    max_violations: int = 20
    window_s: float = 60.0
    totals: dict[str, int] = field(default_factory=dict)
    _recent: dict[str, deque[float]] = field(default_factory=dict)

    def record(self, plugin: str, now: float) -> bool:
        """Count one; True when the plugin has now crossed the limit."""
        self.totals[plugin] = self.totals.get(plugin, 0) + 1
        recent = self._recent.setdefault(plugin, deque())
        recent.append(now)
        while recent and now - recent[0] > self.window_s:
            recent.popleft()
        return self.max_violations > 0 and len(recent) > self.max_violations

    def forget(self, plugin: str) -> None:
        """Start counting afresh (after an operator re-enables the plugin)."""
        self._recent.pop(plugin, None)
