"""``rosey plugin validate``: check plugin folders offline."""

from __future__ import annotations

from pathlib import Path

from rosey.cli.common import EXIT_FAILED, EXIT_OK

__all__ = ["validate"]


def validate(paths: list[Path]) -> int:
    from rosey.plugins.discovery import discover

    found = discover(paths or [Path("plugins")])
    for problem in found.problems:
        print(problem)
    if not found.problems:
        names = ", ".join(sorted(found.plugins)) or "none"
        print(f"{len(found.plugins)} plugin(s) valid: {names}")
    return EXIT_FAILED if found.problems else EXIT_OK
