"""A plugin's ``requirements`` (DESIGN 2.10): their normal form, the cache key of a set, and
which of them a failed build blames.

Pure: the builder that runs the resolver is ``rosey.sandbox.environments``. Two plugins whose
requirements are the same set (in any order, spelling or case: ``Six==1.16.0`` and
``six == 1.16.0``) get the same key, hence share one environment; any change to the set, or to
the runtime the environment is built for (the interpreter, the SDK's own pins, where the rosey
package lives), gives another key, hence a new environment.

``packaging`` is imported by the functions that parse requirements, not with the module: a
bot whose plugins have no requirements never loads it.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "KEY_LENGTH",
    "LAYOUT",
    "Blame",
    "blame",
    "environment_key",
    "normal_set",
    "normalize",
]

#: Bumped when the layout of an environment changes: every key changes with it.
LAYOUT = "rosey-env-1"
#: Hex digits of the key (80 bits: a folder name, not a secret).
KEY_LENGTH = 20
#: Lines of the resolver's output kept in an error (its reason, not its whole log).
_MAX_REASON_LINES = 12
_MAX_REASON_CHARS = 1500


def normalize(text: str) -> str:
    """One spelling per requirement: canonical name, sorted extras and specifiers, marker.

    ``ValueError`` (``InvalidRequirement``) when ``text`` is not PEP 508.
    """
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    req = Requirement(text)
    out: str = canonicalize_name(req.name)
    if req.extras:
        out += "[" + ",".join(sorted(canonicalize_name(e) for e in req.extras)) + "]"
    if req.url:
        out += f" @ {req.url}"
    else:
        out += ",".join(sorted(str(spec) for spec in req.specifier))
    if req.marker is not None:
        out += f" ; {req.marker}"
    return out


def normal_set(requirements: Iterable[str]) -> tuple[str, ...]:
    """The requirements as a set: normalized, without repeats, sorted."""
    return tuple(sorted({normalize(text) for text in requirements}))


def environment_key(requirements: Iterable[str], runtime: str) -> str:
    """The folder name of the environment for this set of requirements on this runtime."""
    material = "\n".join((LAYOUT, runtime, *normal_set(requirements)))
    return hashlib.sha256(material.encode()).hexdigest()[:KEY_LENGTH]


@dataclass(frozen=True)
class Blame:
    """What a failed build says: the requirements it names (in the order it names them; empty
    when it names none of them) and the resolver's reason, in its own words."""

    requirements: tuple[str, ...]
    reason: str


_PREFIX = re.compile(r"^(?:error|ERROR|cause|Caused by)\s*:\s*", re.IGNORECASE)
_TREE = re.compile(r"^[\s│├╰─▶|`>-]*")
_NOISE = re.compile(
    r"^(?:hint|note|Using Python|Resolved|Prepared|Installed|Uninstalled|Audited|Collecting"
    r"|Downloading|Looking in|Requirement already|\+ |- )",
    re.IGNORECASE,
)


def _reason_lines(output: str) -> list[str]:
    """The lines of the resolver's output from its first error on, without decoration."""
    lines = output.splitlines()
    start = next(
        (i for i, line in enumerate(lines) if re.match(r"^\s*(error|ERROR)\s*:", line)), None
    )
    if start is None:  # no "error:" line: the last lines, whatever they are
        start = max(0, len(lines) - 3)
    kept: list[str] = []
    for line in lines[start:]:
        text = _PREFIX.sub("", _TREE.sub("", line).strip()).strip()
        if not text or _NOISE.match(text):
            continue
        if text not in kept:
            kept.append(text)
    return kept[:_MAX_REASON_LINES]


def _mentions(text: str, name: str) -> int | None:
    """Where ``text`` first names the package ``name`` (any spelling), or None."""
    pattern = re.escape(name).replace(r"\-", "[-_.]")
    found = re.search(rf"(?<![\w.-]){pattern}(?![\w-]|\.[A-Za-z])", text, re.IGNORECASE)
    return None if found is None else found.start()


def _exactly(text: str, requirement: str) -> int | None:
    """Where ``text`` quotes ``requirement`` as written or in its normal form, or None."""
    spellings = {requirement, requirement.replace(" ", "")}
    with contextlib.suppress(ValueError):  # InvalidRequirement
        spellings.add(normalize(requirement))
    found = [
        match.start()
        for spelling in spellings
        if spelling and (match := re.search(rf"(?<![\w.-]){re.escape(spelling)}(?![\w.*])", text))
    ]
    return min(found) if found else None


def blame(output: str, requirements: Sequence[str]) -> Blame:
    """Read a failed build's output: the requirements it names, and its reason.

    ``requirements`` is what was asked for, as written (the plugin's and the SDK's pins). Those
    the reason quotes whole are blamed (``six==1.16.0`` and ``six==99.0`` when it says both are
    required); when it quotes none, those whose package it names.
    """
    lines = _reason_lines(output)
    reason = ": ".join(line.rstrip(":") for line in lines) or "the installer failed silently"
    if len(reason) > _MAX_REASON_CHARS:
        reason = reason[: _MAX_REASON_CHARS - 1] + "…"
    exact = {text: _exactly(reason, text) for text in requirements}
    named = {text: where for text, where in exact.items() if where is not None}
    if not named:
        from packaging.requirements import InvalidRequirement, Requirement
        from packaging.utils import canonicalize_name

        for text in requirements:
            try:
                name = canonicalize_name(Requirement(text).name)
            except InvalidRequirement:
                continue
            where = _mentions(reason, name)
            if where is not None:
                named[text] = where
    return Blame(tuple(sorted(named, key=lambda text: named[text])), reason)
