"""A one-shot helper process: JSON in on stdin, JSON out on stdout, then it exits.

The checker (``rosey.checker``) runs this way: ``python -I -m MODULE``, dying with the thread
that started it (``PR_SET_PDEATHSIG``), ended at a deadline, its failure told in words (its
last line of error output, or the signal that ended it) so that the caller can say why.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from typing import Any

from rosey.sandbox.prctl import die_with_parent_hook

__all__ = ["OneShotFailed", "run_oneshot"]


class OneShotFailed(Exception):
    """The helper gave no answer: ``why`` says how it ended."""

    def __init__(self, why: str) -> None:
        self.why = why
        super().__init__(why)


def run_oneshot(
    module: str, request: dict[str, Any], *, deadline_s: float, cpu_s: int, memory_mb: int
) -> dict[str, Any]:
    """``module``'s answer to ``request``; ``OneShotFailed`` if it gives none in time.

    ``cpu_s`` and ``memory_mb`` are the limits the helper sets itself (named here only to
    explain its end: SIGXCPU, MemoryError).
    """
    try:
        done = subprocess.run(
            [sys.executable, "-I", "-m", module],
            input=json.dumps(request).encode(),
            capture_output=True,
            timeout=deadline_s,
            preexec_fn=die_with_parent_hook(signal.SIGKILL),
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise OneShotFailed(f"it took longer than {deadline_s:g} s") from None
    except OSError as exc:
        raise OneShotFailed(f"it could not be started: {exc.strerror}") from None
    if done.returncode != 0:
        raise OneShotFailed(_ending(done.returncode, done.stderr, cpu_s, memory_mb))
    try:
        reply = json.loads(done.stdout)
    except ValueError:
        raise OneShotFailed("its answer was not JSON") from None
    if not isinstance(reply, dict):
        raise OneShotFailed("its answer was not a JSON object")
    return reply


def _ending(code: int, stderr: bytes, cpu_s: int, memory_mb: int) -> str:
    """How the helper ended, in words: its signal, or the last line it wrote."""
    if code < 0:
        if -code == signal.SIGXCPU:
            return f"it used more than its {cpu_s} s of CPU"
        try:
            return f"it was ended by {signal.Signals(-code).name}"
        except ValueError:
            return f"it was ended by signal {-code}"
    lines = stderr.decode(errors="replace").strip().splitlines()
    last = lines[-1] if lines else f"it exited with status {code}"
    if last.startswith("MemoryError"):
        return f"it ran out of its {memory_mb} MiB of memory"
    return last
