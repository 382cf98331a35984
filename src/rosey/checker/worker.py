"""The checker process: limit itself, read one request, check, answer, exit.

Requests (JSON on stdin): ``{"job": "config", "path": P | null, "overrides": ENCODED}`` and
``{"job": "manifests", "paths": [P, ...]}``. Answers (JSON on stdout): ``{"config": RECORD}``
or ``{"problems": [[file, field, problem, line], ...], "one": bool}``; ``{"manifests":
[{"path", "declared", "manifest": RECORD | null, "problems": [...]}, ...]}``. Records are
``rosey.protocol.record.encode``'s. Anything else ends the process with a message on stderr,
which the bot reports as the check's failure.
"""

from __future__ import annotations

import json
import resource
import signal
import sys
from pathlib import Path
from typing import Any

from rosey.checker import CPU_S, MEMORY_MB
from rosey.errors import ConfigError, ConfigProblems, FileError, ManifestError
from rosey.plugins.reading import ManifestRead, read_in_process
from rosey.protocol.record import decode, encode

__all__ = ["answer", "main"]


def main() -> None:
    _limit()
    request = json.loads(sys.stdin.buffer.read())
    json.dump(answer(request), sys.stdout)


def _limit() -> None:
    """Die with the bot, and within the CPU and memory a check may take."""
    from rosey.sandbox.prctl import available, set_death_signal

    if available():
        set_death_signal(signal.SIGKILL)  # again: the bot's hook armed it, others may not
    resource.setrlimit(resource.RLIMIT_CPU, (CPU_S, CPU_S))
    size = MEMORY_MB * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (size, size))


def answer(request: dict[str, Any]) -> dict[str, Any]:
    """The answer to one request (``SystemExit`` with a message if it is not one)."""
    job = request.get("job")
    if job == "config":
        return _config(request)
    if job == "manifests":
        reads = read_in_process([Path(p) for p in request["paths"]])
        return {"manifests": [_manifest(read) for read in reads]}
    raise SystemExit(f"rosey.checker: unknown job {job!r}")


def _config(request: dict[str, Any]) -> dict[str, Any]:
    from rosey.config import load_config

    path = request.get("path")
    try:
        config = load_config(
            None if path is None else Path(path), overrides=decode(request.get("overrides") or {})
        )
    except ConfigProblems as exc:
        return {"problems": [_problem(p) for p in exc.problems], "one": False}
    except ConfigError as exc:
        return {"problems": [_problem(exc)], "one": True}
    return {"config": encode(config)}


def _manifest(read: ManifestRead) -> dict[str, Any]:
    problems = list(read.problems)
    manifest = None
    if read.manifest is not None:
        try:
            manifest = encode(read.manifest)
        except TypeError as exc:  # a YAML date, binary or set in ``config``
            problems.append(
                ManifestError(
                    str(read.path),
                    "config",
                    f"{exc}; allowed: strings, numbers, booleans, null, lists and mappings",
                )
            )
    return {
        "path": str(read.path),
        "declared": read.declared,
        "manifest": manifest,
        "problems": [_problem(p) for p in problems],
    }


def _problem(error: FileError) -> list[Any]:
    return [error.file, error.field, error.problem, error.line]
