"""How deep a JSON body nests, checked before ``json.loads`` sees it. Pure, standard library.

``json.loads`` recurses once per ``[``/``{``: a body of 100 000 nested lists (200 KB, well
under the broker's max payload) raises ``RecursionError``, which is no ``ValueError`` and
escapes every handler that expects a decode error. :func:`too_deep` answers first, at C speed
(``bytes.count``, ``re.sub``, ``bytes.replace``; no Python loop over characters):

- fewer brackets than the limit (every ordinary message): no, after two ``count`` calls;
- else strings are removed (brackets inside them do not nest), and the innermost ``[]``/``{}``
  pairs are peeled off, once per pass; whatever is left after ``limit`` passes is too deep.

A pass peels at least one level (an inner ``{}`` and ``[]`` may go in the same pass), so a
body is refused beyond ``2 * limit`` levels at the latest and always accepted up to ``limit``.
Malformed bracket soup is left to ``json.loads`` to reject, unless it holds more unclosed
brackets than the limit (``json.loads`` would nest into each before it failed).
"""

from __future__ import annotations

import re

__all__ = ["MAX_DEPTH", "too_deep"]

#: Nesting a bus message may have (a command reply's ``data`` sits at level 2).
MAX_DEPTH = 64

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")


def too_deep(data: bytes, limit: int = MAX_DEPTH) -> bool:
    """Whether the JSON in ``data`` may nest deeper than ``limit`` (see the module doc)."""
    if data.count(b"[") + data.count(b"{") <= limit:
        return False
    brackets = _STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    for _ in range(limit):
        peeled = brackets.replace(b"[]", b"").replace(b"{}", b"")
        if len(peeled) == len(brackets):
            # Nothing left to peel: empty, or not JSON. json.loads will say so, but would
            # first nest into every opening bracket left: refuse when that is too many.
            return brackets.count(b"[") + brackets.count(b"{") > limit
        brackets = peeled
    return bool(brackets)
