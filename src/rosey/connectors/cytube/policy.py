"""Reconnects and refusals (pure, no I/O): when to try again, and what to tell the operator.

``Backoff`` spaces connection attempts: exponential with jitter (many bots that lost the same
server must not come back in step), reset once a connection has stayed up a while, and never
faster than the server's per-address connection throttle (a token bucket of 5, one more every
10 s: the 6th quick connect is refused, ../shared/cytube.md), which it replays on our side.

``refusal_from_*`` turn the server's answers (``login`` failures, ``needPassword``, ``kick``,
``errorMsg``, a refused connect) into a ``Refusal``: the words for the status ``last_error``, and
whether retrying can help (a wrong password will not get better by itself; a name in use may).
"""

from __future__ import annotations

import enum
import math
import random
import re
from dataclasses import dataclass

__all__ = [
    "Backoff",
    "Refusal",
    "RefusalKind",
    "pick_socket_server",
    "refusal_from_connect_error",
    "refusal_from_error_msg",
    "refusal_from_kick",
    "refusal_from_login",
    "refusal_from_need_password",
]


class RefusalKind(enum.Enum):
    BAD_PASSWORD = "bad_password"
    NAME_REGISTERED = "name_registered"
    NAME_TAKEN = "name_taken"
    NAME_INVALID = "name_invalid"
    GUEST_COOLDOWN = "guest_cooldown"
    CHANNEL_PASSWORD_NEEDED = "channel_password_needed"
    CHANNEL_PASSWORD_WRONG = "channel_password_wrong"
    CHANNEL_INVALID = "channel_invalid"
    BANNED = "banned"
    KICKED = "kicked"
    THROTTLED = "throttled"
    UNREACHABLE = "unreachable"
    DISCONNECTED = "disconnected"
    LOGIN_FAILED = "login_failed"


#: Kinds that retrying cannot fix: the connector stops and says why, until the operator acts.
FATAL = frozenset(
    {
        RefusalKind.BAD_PASSWORD,
        RefusalKind.NAME_REGISTERED,
        RefusalKind.NAME_INVALID,
        RefusalKind.CHANNEL_PASSWORD_NEEDED,
        RefusalKind.CHANNEL_PASSWORD_WRONG,
        RefusalKind.CHANNEL_INVALID,
        RefusalKind.BANNED,
    }
)


@dataclass(frozen=True)
class Refusal:
    """Why the connector is not (or no longer) in the channel, in words for ``last_error``."""

    kind: RefusalKind
    words: str
    #: Seconds the server asked us to wait before trying again (guest cooldown), if it said.
    wait: float | None = None

    @property
    def fatal(self) -> bool:
        return self.kind in FATAL


_GUEST_DELAY = re.compile(r"per\s+(\d+(?:\.\d+)?)\s+seconds?", re.IGNORECASE)


def refusal_from_login(error: object, *, username: str, account: bool) -> Refusal:
    """A ``login`` event with ``success: false``."""
    text = error if isinstance(error, str) and error else "no reason given"
    low = text.lower()
    if "registered" in low:
        return Refusal(
            RefusalKind.NAME_REGISTERED,
            f"login refused: the name {username!r} belongs to a registered account and no "
            f"password is configured (set `password`, or pick another name): {text}",
        )
    if "in use" in low:
        return Refusal(
            RefusalKind.NAME_TAKEN,
            f"login refused: the name {username!r} is in use in the channel (retrying): {text}",
        )
    if "guest" in low and ("restricted" in low or "second" in low):
        found = _GUEST_DELAY.search(text)
        wait = float(found.group(1)) if found else 60.0
        return Refusal(
            RefusalKind.GUEST_COOLDOWN,
            f"guest login refused: the server allows one guest login per address every "
            f"{wait:g} s; retrying after that wait: {text}",
            wait=wait,
        )
    if account and ("password" in low or "invalid" in low):
        return Refusal(
            RefusalKind.BAD_PASSWORD,
            f"login refused: the password for account {username!r} is wrong (check `password`): "
            f"{text}",
        )
    if "reserved" in low or "invalid username" in low or "characters" in low:
        return Refusal(
            RefusalKind.NAME_INVALID,
            f"login refused: the server does not accept the name {username!r} (pick another "
            f"`username`): {text}",
        )
    return Refusal(RefusalKind.LOGIN_FAILED, f"login refused (retrying): {text}")


def refusal_from_need_password(*, configured: bool, channel: str) -> Refusal:
    """A ``needPassword`` event: the channel is password-protected."""
    if configured:
        return Refusal(
            RefusalKind.CHANNEL_PASSWORD_WRONG,
            f"channel {channel!r} refused its password (check `channel_password`)",
        )
    return Refusal(
        RefusalKind.CHANNEL_PASSWORD_NEEDED,
        f"channel {channel!r} is password-protected: set `channel_password`",
    )


def refusal_from_kick(reason: object) -> Refusal:
    """A ``kick`` event (then the server disconnects us)."""
    text = reason if isinstance(reason, str) and reason else "no reason given"
    if "banned" in text.lower():
        return Refusal(RefusalKind.BANNED, f"banned from the channel: {text}")
    return Refusal(RefusalKind.KICKED, f"kicked from the channel: {text}")


def refusal_from_error_msg(msg: object, *, channel: str) -> Refusal | None:
    """An ``errorMsg`` event, when it means we are not in the channel (None otherwise).

    ``errorMsg`` also answers a failed PM; that is not a refusal of the connection.
    """
    text = msg if isinstance(msg, str) else ""
    if "channel name" in text.lower() or "invalid channel" in text.lower():
        return Refusal(
            RefusalKind.CHANNEL_INVALID,
            f"the server refused the channel name {channel!r} (1–30 of A–Z a–z 0–9 _ -): {text}",
        )
    return None


def refusal_from_connect_error(detail: object, *, server: str) -> Refusal:
    """A refused socket.io connect: from one address, the server's throttle is the usual cause."""
    return Refusal(
        RefusalKind.THROTTLED,
        f"the server {server} refused the connection (too many connects from this address?): "
        f"{detail}",
    )


def pick_socket_server(body: object) -> str | None:
    """The socket server to use from a ``/socketconfig/<channel>.json`` answer.

    A ``secure: true`` entry when there is one (the server's own advice), else the first entry;
    None when the answer lists none.
    """
    servers = body.get("servers") if isinstance(body, dict) else None
    if not isinstance(servers, list):
        return None
    urls: list[tuple[bool, str]] = [
        (bool(s.get("secure")), s["url"])
        for s in servers
        if isinstance(s, dict) and isinstance(s.get("url"), str) and s["url"]
    ]
    for secure, url in urls:
        if secure:
            return url
    return urls[0][1] if urls else None


class Backoff:
    """Delays between connection attempts.

    ``delay(now, rng)`` is how long to wait before the next attempt; call ``attempt(now)`` when
    one starts, ``up(now)`` when the channel is joined and ``down(now)`` when the connection
    ends. A connection that stayed up ``stable_after`` seconds resets the exponent.
    """

    def __init__(
        self,
        *,
        base: float = 1.0,
        factor: float = 2.0,
        cap: float = 120.0,
        jitter: float = 0.5,
        stable_after: float = 60.0,
        throttle_burst: int = 5,
        throttle_refill: float = 10.0,
        throttle_margin: float = 0.5,
    ) -> None:
        if not 0 <= jitter <= 1:
            raise ValueError("jitter is a fraction of the delay, from 0 to 1")
        self.base, self.factor, self.cap, self.jitter = base, factor, cap, jitter
        self.stable_after = stable_after
        self.throttle_burst = throttle_burst
        self.throttle_refill = throttle_refill
        self.throttle_margin = throttle_margin
        self.failures = 0
        self._tokens = float(throttle_burst)
        self._tokens_at: float | None = None
        self._up_since: float | None = None

    def _tokens_now(self, now: float) -> float:
        if self._tokens_at is None:
            return self._tokens
        refill = (
            (now - self._tokens_at) / self.throttle_refill if self.throttle_refill > 0 else math.inf
        )
        return min(float(self.throttle_burst), self._tokens + refill)

    def throttle_wait(self, now: float) -> float:
        """Seconds until the server's connection bucket (as we replay it) holds a token."""
        tokens = self._tokens_now(now)
        if tokens >= 1.0:
            return 0.0
        # Plus a margin: our count of the server's bucket must never run ahead of its own.
        return (1.0 - tokens) * self.throttle_refill + self.throttle_margin

    def delay(self, now: float, rng: random.Random, *, at_least: float = 0.0) -> float:
        """Seconds to wait before the next attempt (0 for the first one)."""
        if self.failures == 0:
            backoff = 0.0
        else:
            full = min(self.cap, self.base * self.factor ** (self.failures - 1))
            backoff = full * (1.0 - self.jitter * rng.random())
        return max(backoff, at_least, self.throttle_wait(now))

    def attempt(self, now: float) -> None:
        """A connection attempt starts: it spends one of the server's tokens."""
        self._tokens = self._tokens_now(now) - 1.0
        self._tokens_at = now

    def up(self, now: float) -> None:
        """Joined and logged in."""
        self._up_since = now

    def down(self, now: float) -> None:
        """The connection ended, or an attempt failed."""
        if self._up_since is not None and now - self._up_since >= self.stable_after:
            self.failures = 0
        self._up_since = None
        self.failures += 1
