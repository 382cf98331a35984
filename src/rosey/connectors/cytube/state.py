"""What the connector remembers about the channel (pure, no I/O): users and replayed history.

``UserList`` keeps every user's rank current from ``userlist``, ``addUser``, ``setUserRank`` and
``userLeave`` (a registered user can be announced with rank 1 and raised a moment later). CyTube
names are case-insensitive; the name is kept as the server spelled it.

``ReplayFilter`` tells a line said now from history. On join the server replays the last 15
chat lines as ordinary ``chatMsg`` events, before or (while a registered channel is being loaded)
after ``login`` completes. A replayed line carries its original server ``time``, so a line older
than this connection's login is history; the moment is taken anew on every reconnect. Lines
already seen on an earlier connection are recognised by their content too, so a clock that
disagrees a little with the server's cannot make a command run twice after a reconnect.
"""

from __future__ import annotations

import enum
import math
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["GUEST_RANK", "REGISTERED_RANK", "ReplayFilter", "Seen", "User", "UserList"]

GUEST_RANK = 0
REGISTERED_RANK = 1


@dataclass(frozen=True)
class User:
    name: str
    rank: int

    @property
    def guest(self) -> bool:
        """Not logged in to an account: anyone may take an unregistered name as a guest."""
        return self.rank < REGISTERED_RANK


def _rank(value: object) -> int | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    return None


class UserList:
    """The channel's users and their ranks, from the server's events."""

    def __init__(self) -> None:
        self._users: dict[str, User] = {}

    def __len__(self) -> int:
        return len(self._users)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._users

    def get(self, name: str) -> User | None:
        return self._users.get(name.lower())

    def rank_of(self, name: str, default: int = GUEST_RANK) -> int:
        """The user's rank; ``default`` (guest) for someone the list does not know.

        Unknown is treated as the least trusted rank a chatting user can have.
        """
        user = self.get(name)
        return user.rank if user is not None else default

    def replace_all(self, users: Iterable[object]) -> None:
        """``userlist``: everyone in the channel, sent on join."""
        self._users.clear()
        for entry in users:
            if isinstance(entry, Mapping):
                self.add(entry)

    def add(self, entry: Mapping[str, Any]) -> User | None:
        """``addUser`` (or one ``userlist`` entry); returns the user, or None if malformed."""
        name, rank = entry.get("name"), _rank(entry.get("rank"))
        if not isinstance(name, str) or not name:
            return None
        user = User(name, rank if rank is not None else GUEST_RANK)
        self._users[name.lower()] = user
        return user

    def set_rank(self, entry: Mapping[str, Any]) -> User | None:
        """``setUserRank``: a new rank for someone already here (ignored for strangers)."""
        name, rank = entry.get("name"), _rank(entry.get("rank"))
        if not isinstance(name, str) or rank is None or name.lower() not in self._users:
            return None
        user = User(self._users[name.lower()].name, rank)
        self._users[name.lower()] = user
        return user

    def remove(self, entry: Mapping[str, Any]) -> User | None:
        """``userLeave``: returns who left, or None if the list did not know them."""
        name = entry.get("name")
        if not isinstance(name, str):
            return None
        return self._users.pop(name.lower(), None)


class Seen(enum.Enum):
    """How a chat line is to be taken."""

    LIVE = "live"  # said now: may be a command
    REPLAY = "replay"  # history the server replayed on join
    DUPLICATE = "duplicate"  # already delivered on an earlier connection


class ReplayFilter:
    """Classifies chat lines as live or history, per connection.

    ``begin(login_ms)`` starts a connection (the local wall clock at login, in ms);
    ``classify(time_ms, username, msg)`` answers for one line. ``skew_ms`` is how far the server's
    clock may run behind ours: a line stamped up to that much before our login is still taken as
    live (the cost: a command typed in that moment before the bot joined is answered). A server
    clock ahead of ours would make recent history look live; lines delivered on an earlier
    connection are caught by their content instead (``DUPLICATE``), which is what matters after
    a reconnect.
    """

    def __init__(self, *, skew_ms: float = 0.0, remember: int = 256) -> None:
        self.skew_ms = skew_ms
        self._remember = remember
        self._login_ms: float | None = None
        self._seen: OrderedDict[tuple[float, str, str], None] = OrderedDict()

    def connecting(self) -> None:
        """A new connection starts: until it logs in, every line is history."""
        self._login_ms = None

    def begin(self, login_ms: float) -> None:
        """A new connection logged in at ``login_ms`` (local clock)."""
        self._login_ms = login_ms

    def is_history(self, time_ms: object) -> bool:
        """By its time alone: said before this connection logged in (or not known).

        The server stamps whole milliseconds (``Date.now()``): a line stamped in the millisecond
        of our login may have been said just after it, so it counts as live.
        """
        if self._login_ms is None or not isinstance(time_ms, int | float):
            return True
        return float(time_ms) < math.floor(self._login_ms) - self.skew_ms

    def classify(self, time_ms: object, username: str, msg: str) -> Seen:
        """Whether the line is live, replayed history, or one delivered before."""
        stamp = float(time_ms) if isinstance(time_ms, int | float) else None
        key = (stamp if stamp is not None else -1.0, username.lower(), msg)
        if stamp is not None and key in self._seen:
            return Seen.DUPLICATE
        if self.is_history(time_ms):
            # Before login, or a line without a time: no way to know it is new; not a command.
            return Seen.REPLAY
        self._seen[key] = None
        while len(self._seen) > self._remember:
            self._seen.popitem(last=False)
        return Seen.LIVE
