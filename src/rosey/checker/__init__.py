"""The checker: a short-lived process that reads and checks the config and plugin manifests.

The running bot neither imports pydantic nor parses a plugin's YAML itself. Both happen in a
child process started for each check (``python -I -m rosey.checker``), which answers with
records (``rosey.protocol.record``) as JSON and exits:

- the bot keeps ~10 MiB less resident for as long as it runs (pydantic's extension, heap and
  validators; PyYAML), paying ~0.2 s per check, at start and on rescan, reload and install;
- a hostile ``plugin.yaml`` (an alias bomb, a file that expands without end) costs the checker
  its memory or CPU limit, not the bot: the checker runs under ``RLIMIT_AS`` and ``RLIMIT_CPU``
  and a deadline, and a manifest it cannot finish is reported as that plugin's problem while
  the others are checked one by one.

Here is the bot's side (``load_config``, ``ManifestReads``); ``rosey.checker.worker`` is the
process's.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rosey.config import DEFAULT_CONFIG_FILE, BotConfig
from rosey.errors import ConfigError, ConfigProblems, ManifestError
from rosey.plugins.reading import ManifestRead
from rosey.protocol.manifest import Manifest
from rosey.protocol.record import decode, encode
from rosey.sandbox.oneshot import OneShotFailed, run_oneshot

__all__ = ["CPU_S", "DEADLINE_S", "MEMORY_MB", "ManifestReads", "load_config"]

#: How long one check may take, wall clock.
DEADLINE_S = 30.0
#: The checker's CPU seconds (``RLIMIT_CPU``) and address space (``RLIMIT_AS``): what the
#: largest sane config or manifest needs many times over (one takes ~0.2 s, ~40 MiB).
CPU_S = 10
MEMORY_MB = 256


def load_config(
    path: Path | None = None, *, overrides: Mapping[str, Any] | None = None
) -> BotConfig:
    """``rosey.config.load_config`` in the checker: the config record, or ``ConfigError`` /
    ``ConfigProblems`` exactly as in-process (the environment is the checker's too)."""
    source = str(path or DEFAULT_CONFIG_FILE)
    request = {
        "job": "config",
        "path": None if path is None else str(path),
        "overrides": encode(dict(overrides or {})),
    }
    try:
        reply = _check(request)
        if "problems" in reply:
            problems = [ConfigError(*p[:3], line=p[3]) for p in reply["problems"]]
            if reply.get("one"):  # the file itself (unreadable, not YAML), not its fields
                raise problems[0]
            raise ConfigProblems(problems)
        config = decode(reply["config"])
        if not isinstance(config, BotConfig):
            raise OneShotFailed("it answered no config")
    except OneShotFailed as exc:
        raise ConfigError(source, "", f"{_UNCHECKED}: {exc.why}") from None
    except (KeyError, IndexError, TypeError, ValueError):
        raise ConfigError(source, "", f"{_UNCHECKED}: its answer was malformed") from None
    return config


class ManifestReads:
    """Reads ``plugin.yaml`` files in the checker, remembering each file's last answer: a file
    whose bytes are unchanged is not checked again (a restart re-reads its manifest, a reload
    usually changes only code). A ``rosey.plugins.reading.ManifestReader``.

    Only the checker's own answers are remembered; a file it could not check is tried again.
    """

    def __init__(self) -> None:
        #: File → the digest of its bytes when last checked, and the answer.
        self._known: dict[Path, tuple[bytes, ManifestRead]] = {}
        #: How many checker processes it has started (for tests and benches).
        self.runs = 0

    def __call__(self, paths: Sequence[Path]) -> list[ManifestRead]:
        digests = {path: _digest(path) for path in paths}
        todo = [
            path
            for path in dict.fromkeys(paths)
            if digests[path] is None or self._known.get(path, (None,))[0] != digests[path]
        ]
        answers = dict(zip(todo, self._read(todo), strict=True))
        fresh = {path: _read_of(path, answer) for path, answer in answers.items()}
        reads = [fresh[path] if path in fresh else self._known[path][1] for path in paths]
        if len(self._known) > _REMEMBERED:  # staged installs leave their files behind
            self._known.clear()
        for path, answer in answers.items():
            digest = digests[path]
            if digest is not None and isinstance(answer, ManifestRead):
                self._known[path] = (digest, answer)
        return reads

    def _read(self, paths: Sequence[Path]) -> list[ManifestRead | OneShotFailed]:
        """The checker's answer for each file, or why it gave none. All in one checker; if it
        fails, each file in one of its own, so that a manifest that exhausts the checker is
        that plugin's problem only."""
        if not paths:
            return []
        try:
            self.runs += 1
            return list(_manifests(paths))
        except OneShotFailed as exc:
            if len(paths) == 1:
                return [exc]
        return [answer for path in paths for answer in self._read([path])]


def _read_of(path: Path, answer: ManifestRead | OneShotFailed) -> ManifestRead:
    if isinstance(answer, ManifestRead):
        return answer
    problem = ManifestError(str(path), "", f"{_UNCHECKED}: {answer.why}")
    return ManifestRead(path, None, None, (problem,))


_UNCHECKED = "could not be checked"
#: The most files ``ManifestReads`` remembers before it forgets them all.
_REMEMBERED = 4096
#: The largest file it remembers (a manifest is a few hundred bytes).
_DIGESTED = 1 << 20


def _digest(path: Path) -> bytes | None:
    """The digest of the file's bytes; None (check it again) unless it is a regular file of at
    most ``_DIGESTED`` bytes: the bot reads no more of a plugin's file than that, and never
    waits on one (a FIFO, a device). The checker reads the rest, within its limits."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as file:
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            data = file.read(_DIGESTED + 1)
        except OSError:
            return None
    return hashlib.sha256(data).digest() if len(data) <= _DIGESTED else None


def _manifests(paths: Sequence[Path]) -> list[ManifestRead]:
    reply = _check({"job": "manifests", "paths": [str(p) for p in paths]})
    reads: list[ManifestRead] = []
    try:
        for item in reply["manifests"]:
            manifest = decode(item["manifest"]) if item["manifest"] is not None else None
            problems = tuple(ManifestError(*p[:3], line=p[3]) for p in item["problems"])
            reads.append(ManifestRead(Path(item["path"]), item["declared"], manifest, problems))
    except (KeyError, IndexError, TypeError, ValueError):
        raise OneShotFailed("its answer was malformed") from None
    if any(r.manifest is not None and not isinstance(r.manifest, Manifest) for r in reads):
        raise OneShotFailed("it answered something else than manifests")
    if [r.path for r in reads] != list(paths):
        raise OneShotFailed("it answered for other files than it was asked")
    return reads


def _check(request: dict[str, Any]) -> dict[str, Any]:
    return run_oneshot(
        "rosey.checker", request, deadline_s=DEADLINE_S, cpu_s=CPU_S, memory_mb=MEMORY_MB
    )
