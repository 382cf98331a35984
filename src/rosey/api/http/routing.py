"""Request targets and routes of the HTTP face: pure, table-tested (``server.py`` does the I/O).

A target (``/api/plugins/a%2Fb/logs?lines=5#x``) is split into its path segments, each
percent-decoded on its own (so ``%2F`` stays inside one segment, as a plugin name), the decoded
path (for messages) and the query pairs (``+`` is a space, blank values kept, repeated keys
kept in order). A route is a method set and a pattern of segments, ``{name}`` matching any one
non-empty segment; ``GET`` also answers ``HEAD``. ``resolve`` gives the route and its
parameters, or the methods the path allows (``405`` with ``Allow``), or nothing (``404``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar
from urllib.parse import parse_qsl, unquote

H = TypeVar("H")


@dataclass(frozen=True)
class Target:
    """A request target, decoded: ``path`` for messages, ``segments`` for matching."""

    path: str
    segments: tuple[str, ...]
    query: tuple[tuple[str, str], ...]

    def first(self, key: str) -> str | None:
        """The first value of ``key`` in the query, else None."""
        for name, value in self.query:
            if name == key:
                return value
        return None


def _decode(text: str) -> str:
    """Percent-decoded as UTF-8; escapes that are not UTF-8 stay as they were."""
    if "%" not in text:
        return text
    try:
        return unquote(text, errors="strict")
    except UnicodeDecodeError:
        return text


def parse_target(target: str) -> Target:
    """Split a request target (origin form, absolute form or ``*``) into path and query."""
    target = target.partition("#")[0]
    if target.startswith(("http://", "https://")):  # absolute form: drop scheme and authority
        rest = target.split("//", 1)[1]
        slash = rest.find("/")
        query_at = rest.find("?")
        if slash < 0 or (0 <= query_at < slash):
            target = "/" + (rest[query_at:] if query_at >= 0 else "")
        else:
            target = rest[slash:]
    raw_path, _, raw_query = target.partition("?")
    segments = tuple(_decode(part) for part in raw_path.split("/")[1:])
    if not raw_path.startswith("/"):
        segments = ()
    query = tuple(parse_qsl(raw_query, keep_blank_values=True, errors="replace"))
    return Target(_decode(raw_path), segments, query)


@dataclass(frozen=True)
class Route(Generic[H]):
    """``methods`` on the path ``pattern`` (``/a/{b}``); ``excluded`` values a parameter may
    not take (``{action}`` is never ``logs``, which has its own GET-only route)."""

    methods: frozenset[str]
    pattern: tuple[str, ...]
    handler: H
    excluded: tuple[tuple[str, str], ...] = ()

    def match(self, segments: Sequence[str]) -> dict[str, str] | None:
        if len(segments) != len(self.pattern):
            return None
        params: dict[str, str] = {}
        for want, got in zip(self.pattern, segments, strict=True):
            if want.startswith("{"):
                if not got or "{" in got or "}" in got:
                    return None
                params[want[1:-1]] = got
            elif want != got:
                return None
        if any(params.get(name) == value for name, value in self.excluded):
            return None
        return params


def route(
    method: str, pattern: str, handler: H, *, excluded: tuple[tuple[str, str], ...] = ()
) -> Route[H]:
    """A route; ``GET`` answers ``HEAD`` too (the body is left out)."""
    methods = {method, "HEAD"} if method == "GET" else {method}
    return Route(frozenset(methods), tuple(pattern.split("/")[1:]), handler, excluded)


@dataclass(frozen=True)
class Resolved(Generic[H]):
    """What a request reaches: a handler and its parameters, else the methods allowed there
    (empty: no route has this path, a 404)."""

    handler: H | None
    params: dict[str, str]
    allowed: tuple[str, ...] = ()


def resolve(routes: Sequence[Route[H]], method: str, segments: Sequence[str]) -> Resolved[H]:
    """The first route matching both path and method (in table order), else what is allowed."""
    allowed: set[str] = set()
    for each in routes:
        params = each.match(segments)
        if params is None:
            continue
        if method in each.methods:
            return Resolved(each.handler, params)
        allowed |= each.methods
    return Resolved(None, {}, tuple(sorted(allowed)))
