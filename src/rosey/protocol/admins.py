"""Who is an admin: the config's ``admins`` entries and how a chat caller is matched (pure).

A contract of the config (DESIGN 2.3), so it lives with the contracts: the config validates
its ``admins`` with ``parse_admin`` and sits below the packages that match callers with it
(``rosey.api.chat``). Standard library only. (Moved from ``rosey.security.admins``, issue 11.)

An entry always names its platform (DESIGN 2.3, 2.9):

- ``"platform:user"``: that account on that platform, matched exactly. A user called
  ``irc:alice`` on another platform, or a user called ``console`` on the ``test`` platform, is
  not ``console:console``.
- ``"platform:rank>=N"`` (N ≥ 1): anyone whose rank on that platform is N or more.

A bare ``alice`` is refused when the config is read: it would match a user of that name on any
platform, and anyone can pick a name on some platform.

Where anyone may pick any name (CyTube guests), a by-name entry never matches a guest: a
message whose ``user`` carries ``guest: true`` (set by the connector), or, on the platforms of
``GUEST_RANK_PLATFORMS``, a rank of 0 or less (CyTube: -1 anonymous, 0 guest). Rank entries are
unaffected: a guest's rank is what the platform says it is.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "ALLOWED",
    "GUEST_RANK_PLATFORMS",
    "PLATFORM_PATTERN",
    "AdminEntry",
    "ChatCaller",
    "is_admin",
    "is_guest",
    "parse_admin",
]

#: Platforms whose rank 0 (or less) means "not logged in": by-name entries never match it.
GUEST_RANK_PLATFORMS = frozenset({"cytube"})

PLATFORM_PATTERN = r"[a-z][a-z0-9_-]{0,31}"
_ENTRY = re.compile(rf"^(?P<platform>{PLATFORM_PATTERN}):(?P<who>.+)$")
_RANK = re.compile(r"^rank\s*>=\s*(?P<rank>-?\d+)$")

ALLOWED = (
    "'platform:user' (e.g. 'console:console', 'cytube:alice') or 'platform:rank>=N' "
    "(e.g. 'cytube:rank>=3', N at least 1)"
)


class ChatCaller(Protocol):
    """What the rule needs to know about whoever typed a command."""

    @property
    def platform(self) -> str: ...

    @property
    def username(self) -> str: ...

    @property
    def rank(self) -> int: ...

    @property
    def guest(self) -> bool: ...


@dataclass(frozen=True)
class AdminEntry:
    """One parsed ``admins`` entry: a user on a platform, or a minimum rank on a platform."""

    platform: str
    user: str | None = None
    min_rank: int | None = None

    def __str__(self) -> str:
        return f"{self.platform}:" + (
            self.user if self.user is not None else f"rank>={self.min_rank}"
        )

    def matches(self, caller: ChatCaller) -> bool:
        if caller.platform != self.platform:
            return False
        if self.min_rank is not None:
            return caller.rank >= self.min_rank
        return caller.username == self.user and not is_guest(caller)


def is_guest(caller: ChatCaller) -> bool:
    """Whether the caller is not logged in (anyone could have picked that name)."""
    return caller.guest or (caller.platform in GUEST_RANK_PLATFORMS and caller.rank <= 0)


def parse_admin(text: str) -> AdminEntry:
    """Parse one entry; ``ValueError`` with a sentence saying what is allowed otherwise."""
    match = _ENTRY.match(text) if isinstance(text, str) else None
    if match is None:
        why = (
            "a bare name would match a user of that name on every platform"
            if isinstance(text, str) and ":" not in text
            else "it does not start with a platform name (lowercase letters, digits, '_', '-')"
        )
        raise ValueError(f"{text!r} is not allowed ({why}); expected {ALLOWED}")
    platform, who = match["platform"], match["who"]
    rank = _RANK.match(who)
    if rank is not None:
        min_rank = int(rank["rank"])
        if min_rank < 1:
            raise ValueError(
                f"{text!r} is not allowed (rank>={min_rank} would make every user of "
                f"{platform}, guests included, an admin); expected {ALLOWED}"
            )
        return AdminEntry(platform, min_rank=min_rank)
    if who != who.strip():
        raise ValueError(f"{text!r} is not allowed (spaces around the name); expected {ALLOWED}")
    return AdminEntry(platform, user=who)


def is_admin(caller: ChatCaller, entries: Iterable[AdminEntry]) -> bool:
    """Whether any entry matches the caller (platform and user exactly, or rank)."""
    return any(entry.matches(caller) for entry in entries)
