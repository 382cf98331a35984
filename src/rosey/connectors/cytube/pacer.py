"""When the next chat line may go out so that CyTube's flood limiter keeps it (pure, no I/O).

CyTube drops a line that comes too fast (it does not queue it) and answers ``cooldown``. Its
limiter is not a token bucket (../shared/cytube.md): a user may send ``burst`` lines at once; once
the burst is used up, the count only starts again after a pause longer than ``cooldown``
(``burst / sustained`` seconds, 2 s by default), and until then every line must come at least
``1 / sustained`` seconds after the previous one. A token-bucket sender that bunches lines after a
short pause loses some, so the pacer mirrors the limiter itself instead, with margins on the
side of caution: the server measures arrival times, we measure departure times, and loopback or
the Internet may bring two lines closer together than they left.

Which limits apply depends on the channel and the bot's rank: the defaults (burst 20, 10/s) for
everyone, or, when the channel has ``chat_antiflood`` on, its ``chat_antiflood_params`` for users
below moderator (rank < 2). ``ChannelLimits`` is learned from ``channelOpts`` and ``rank`` events.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

__all__ = [
    "ANTIFLOOD_DEFAULT",
    "DEFAULT",
    "MODERATOR_RANK",
    "ChannelLimits",
    "FloodParams",
    "Pacer",
]

#: Users from this rank up are exempt from the channel's own antiflood (CyTube's rule).
MODERATOR_RANK = 2


@dataclass(frozen=True)
class FloodParams:
    """One flood limit: ``burst`` lines at once, then ``sustained`` lines per second."""

    burst: int
    sustained: float
    #: Pause (s) after which a used-up burst is available again; CyTube's default is
    #: ``burst / sustained`` when the channel does not set it.
    cooldown: float | None = None

    @property
    def interval(self) -> float:
        """Seconds the server wants between two lines once the burst is used up."""
        return 1.0 / self.sustained

    @property
    def pause(self) -> float:
        """Seconds of silence after which the burst is whole again."""
        return self.cooldown if self.cooldown is not None else self.burst / self.sustained


#: Everyone's limit (CyTube's ``DEFAULT_ANTIFLOOD``).
DEFAULT = FloodParams(burst=20, sustained=10.0)
#: A channel's ``chat_antiflood_params`` until it tells us its own.
ANTIFLOOD_DEFAULT = FloodParams(burst=4, sustained=1.0)


@dataclass(frozen=True)
class ChannelLimits:
    """What the bot knows of the channel's flood rules and its own rank."""

    antiflood: bool = False
    antiflood_params: FloodParams = ANTIFLOOD_DEFAULT
    rank: int = -1

    def params(self) -> FloodParams:
        """The limit the server applies to the bot's lines now."""
        if self.antiflood and self.rank < MODERATOR_RANK:
            return self.antiflood_params
        return DEFAULT

    def with_channel_opts(self, opts: Mapping[str, Any]) -> ChannelLimits:
        """Apply a ``channelOpts`` event; fields that are missing or malformed keep their value.

        The server is trusted to be CyTube, not to be well-formed: a wrong type must not stop
        the connector, and the old value is the safer guess than none.
        """
        antiflood = opts.get("chat_antiflood", self.antiflood)
        raw = opts.get("chat_antiflood_params")
        params = self.antiflood_params
        if isinstance(raw, Mapping):
            params = _params(raw) or params
        return replace(
            self,
            antiflood=antiflood if isinstance(antiflood, bool) else self.antiflood,
            antiflood_params=params,
        )

    def with_rank(self, rank: object) -> ChannelLimits:
        """Apply a ``rank`` event (the bot's own rank)."""
        if isinstance(rank, int | float) and not isinstance(rank, bool):
            return replace(self, rank=int(rank))
        return self


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    return None


def _params(raw: Mapping[str, Any]) -> FloodParams | None:
    burst, sustained = _number(raw.get("burst")), _number(raw.get("sustained"))
    if burst is None or sustained is None:
        return None
    return FloodParams(
        burst=max(1, int(burst)), sustained=sustained, cooldown=_number(raw.get("cooldown"))
    )


class Pacer:
    """The server's limiter, replayed on our side of the wire to say when to send.

    ``delay(now)`` is how long to wait before the next line; ``sent(now)`` records a line that
    left; ``refused(now, ms)`` records that the server dropped one anyway (``cooldown``), after
    which the burst counts as used up and nothing goes out for the time it names. ``now`` is any
    monotonic clock in seconds (the caller's loop time), so the pacer is a plain value to test.
    """

    def __init__(
        self,
        params: FloodParams = DEFAULT,
        *,
        interval_margin: float = 0.05,
        pause_margin: float = 0.5,
    ) -> None:
        self.params = params
        #: Added to the interval: two lines may arrive closer together than they left (a line
        #: held up on the way, by the network or a busy server, and the next one not). 50 ms
        #: keeps a busy CI machine's stalls from costing a resend; the rate is then 6.7/s.
        self.interval_margin = interval_margin
        #: Added to the pause: we only count the burst as whole again well after the server does.
        self.pause_margin = pause_margin
        self._count = 0
        self._last: float | None = None
        self._not_before = float("-inf")

    def _count_at(self, now: float) -> int:
        if (
            self._last is not None
            and self._count >= self.params.burst
            and now - self._last > self.params.pause + self.pause_margin
        ):
            return 0
        return self._count

    def delay(self, now: float) -> float:
        """Seconds to wait from ``now`` before a line is accepted (0 = send now).

        Once the burst is used up, a line waits the interval; and it never leaves in the
        uncertain moment around the end of the pause (``pause ± pause_margin`` after the last
        line), when the server might count a pause where we would not, or the other way round:
        from then on our count and the server's would differ. It waits until the pause is
        certainly over instead.
        """
        wait = self._not_before - now
        if self._last is not None and self._count_at(now) >= self.params.burst:
            earliest = max(now, self._last + self.params.interval + self.interval_margin)
            gap = earliest - self._last
            if self.params.pause - self.pause_margin < gap <= self.params.pause + self.pause_margin:
                earliest = self._last + self.params.pause + self.pause_margin + 1e-3
            wait = max(wait, earliest - now)
        return max(0.0, wait)

    def sent(self, now: float) -> None:
        """A line left at ``now``."""
        self._count = self._count_at(now) + 1
        self._last = now

    def refused(self, now: float, cooldown_ms: object = None) -> None:
        """The server dropped a line (``cooldown``, with the wait it names in ms, or ``noflood``).

        From now on the burst counts as used up, so lines go out one interval apart until a real
        pause; and nothing goes out before the server's own wait has passed.
        """
        self._count = max(self._count, self.params.burst)
        self._last = now if self._last is None else max(self._last, now)
        wait = _number(cooldown_ms)
        seconds = wait / 1000.0 if wait is not None else self.params.interval
        self._not_before = max(self._not_before, now + seconds + self.interval_margin)
