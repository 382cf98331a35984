"""CyTube's server-side rules as the double applies them (pure; facts in ../shared/cytube.md).

Written from the observed behaviour, not from the connector's code: the connector's pacer and
splitter are tested against these, so they must not share an implementation.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

__all__ = [
    "FloodLimiter",
    "TokenBucket",
    "process_msg",
    "truncate_utf16",
    "valid_channel",
    "valid_username",
]

_CHANNEL = re.compile(r"^[A-Za-z0-9_-]{1,30}$")
_USERNAME = re.compile(r"^[A-Za-z0-9_-]{1,20}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_LINK = re.compile(r"\b(https?://[^\s<]+)")


def valid_channel(name: object) -> bool:
    return isinstance(name, str) and bool(_CHANNEL.match(name))


def valid_username(name: object) -> bool:
    return isinstance(name, str) and bool(_USERNAME.match(name))


def truncate_utf16(text: str, limit: int) -> str:
    """``text.substring(0, limit)`` as JavaScript does it: in UTF-16 code units.

    Like JavaScript, it may cut a surrogate pair in half (the lone half is kept).
    """
    units = text.encode("utf-16-le", "surrogatepass")
    if len(units) <= 2 * limit:
        return text
    return units[: 2 * limit].decode("utf-16-le", "surrogatepass")


def process_msg(raw: str, *, limit: int, wrap_links: bool = True) -> str:
    """What the server broadcasts for a line a user sent: cut, control chars → spaces, HTML."""
    text = _CONTROL.sub(" ", truncate_utf16(raw, limit))
    escaped = html.escape(text, quote=True)
    if wrap_links:
        escaped = _LINK.sub(
            lambda m: (
                f'<a href="{m.group(1)}" target="_blank" rel="noopener noreferrer">{m.group(1)}</a>'
            ),
            escaped,
        )
    return escaped


@dataclass
class FloodLimiter:
    """CyTube's chat limiter: not a token bucket.

    ``burst`` lines go through at once. Once the burst is used up, every further line must come
    at least ``1 / sustained`` s after the previous accepted one, or it is dropped; only a pause
    longer than ``cooldown`` (default ``burst / sustained``) makes the burst whole again.
    """

    burst: int
    sustained: float
    cooldown: float | None = None
    count: int = 0
    last: float = float("-inf")

    def allow(self, now: float, burst: int | None = None, sustained: float | None = None) -> bool:
        """Whether a line arriving at ``now`` is accepted (the limits may be given per call)."""
        burst = self.burst if burst is None else burst
        sustained = self.sustained if sustained is None else sustained
        pause = self.cooldown if self.cooldown is not None else burst / sustained
        if self.count >= burst:
            diff = now - self.last
            if diff > pause:
                self.count = 0
            elif diff < 1.0 / sustained:
                return False
        self.count += 1
        self.last = now
        return True


@dataclass
class TokenBucket:
    """The per-address connection throttle: ``capacity`` tokens, one more every ``refill`` s."""

    capacity: float
    refill: float
    tokens: float | None = None
    at: float = 0.0

    def take(self, now: float) -> bool:
        if self.tokens is None:
            self.tokens, self.at = self.capacity, now
        if self.refill > 0:
            self.tokens = min(self.capacity, self.tokens + (now - self.at) / self.refill)
        else:
            self.tokens = self.capacity
        self.at = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True
