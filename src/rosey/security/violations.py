"""Permission violations, learned from the broker's own log (which a plugin cannot forge).

nats-server logs every refused publish or subscribe with the authenticated identity, e.g.::

    [ERR] 127.0.0.1:59790 - cid:5 - "v2.16.0:python3:plugin:dice"
      - "plugin_dice/user:plugin_dice" - Publish Violation - Subject "rosey.manager.stop"

The first quoted string is the client name: the client's choice, quoted by the server with Go's
``%q`` (so it holds no bare ``"`` and no newline). The second is ``<account>/user:<user>``, what
the broker authenticated. The parser consumes the name as one quoted string and reads the
identity after it, anchored at the connection id, so no name ("… - \"plugin_victim/user:…\" -
Publish Violation …") can pose as another identity; and it attributes a violation only when the
account and the user both belong to the same plugin (each plugin account holds one plugin user).
``parse_violation`` is pure; ``ViolationPolicy`` decides when a plugin has misbehaved often
enough to be disabled.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field

from rosey.security.identities import plugin_of_account, plugin_of_user

_QUOTED = r'"(?:[^"\\]|\\.)*"'
_LINE = re.compile(
    r" - cid:\d+ - (?:" + _QUOTED + r" - )?"
    r'"(?P<account>[^"/\s]+)/user:(?P<user>[^"\s]+)" - '
    r"(?:(?P<kind>Publish|Subscription) Violation - (?:Subject|Reply) (?P<subject>" + _QUOTED + r")"
    r"|(?P<quota>maximum subscriptions exceeded|maximum payload exceeded))"
)


@dataclass(frozen=True)
class Violation:
    plugin: str
    kind: str  # "publish" or "subscribe"
    subject: str
    detail: str


def parse_violation(line: str) -> Violation | None:
    """The violation a server log line reports, if one by a plugin's authenticated identity.

    ``kind`` is ``publish``, ``subscribe`` or ``quota`` (the server closed a connection that
    went over its account's subscription or payload limit).
    """
    match = _LINE.search(line)
    if match is None:
        return None
    plugin = plugin_of_account(match.group("account"))
    if plugin is None or plugin_of_user(match.group("user")) != plugin:
        return None
    quota = match.group("quota")
    if quota is not None:
        return Violation(plugin, "quota", "", f"the broker closed a connection: {quota}")
    kind = "publish" if match.group("kind") == "Publish" else "subscribe"
    subject = _unquote(match.group("subject"))
    return Violation(plugin, kind, subject, f"the broker refused to {kind} {subject!r}")


def _unquote(quoted: str) -> str:
    """A Go ``%q`` string's text; escapes stay as written (subjects hold printable text)."""
    body = quoted[1:-1]
    return body.replace('\\"', '"') if "\\" in body else body


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
