"""A uid (and gid) of its own for each plugin when the bot runs as root, like systemd's DynamicUser.

Two processes of different uids cannot signal, ``ptrace`` or ``prlimit`` each other without
capabilities, and a plugin's uid owns nothing but its data folder: even with every other layer
off, a plugin cannot touch the bot (root), another plugin (another uid), or read the bot's
0600 files (``runtime.json``, the broker's config, the logs).

Allocation is stable per plugin name across restarts of the bot: the mapping lives in
``<state-dir>/uids.json`` (0600). A new name gets the first free uid from a point derived from
its name (so uids rarely move when plugins come and go); a uid is free when no other plugin has
it and the host's user and group databases do not know it. The range defaults to systemd's
(61184–65519), which distributions keep clear of regular users.

A plugin's uid must be able to run Python and reach its folders. Once per bot, before the
first plugin gets a uid, ``unavailable`` runs the runner's imports as a uid of the range: when
that fails (an interpreter below a 0700 home, a state folder inside one), the layer is off for
every plugin, logged once with the reason, and status shows ``missing:uid``. Each runner checks
its own plugin and data folders after switching and fails with the reason in ``last_error``.

``allocate`` is pure (table-tested); ``plugin_uid`` is the I/O shell; ``own_data_dir`` hands a
data folder to its uid.
"""

from __future__ import annotations

import contextlib
import functools
import grp
import json
import logging
import os
import pwd
import subprocess
import sys
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path

from rosey.errors import PluginError
from rosey.files import write_atomically

log = logging.getLogger("rosey.sandbox")

#: systemd's range for dynamic users (``DynamicUser=``), inclusive.
DEFAULT_RANGE = (61184, 65519)
FILE_NAME = "uids.json"


class UidRangeExhausted(PluginError):
    """Every uid of the configured range is taken (a ``PluginError``: the start fails)."""

    def __init__(self, plugin: str, first: int, last: int) -> None:
        self.first, self.last = first, last
        super().__init__(
            plugin,
            f"plugin {plugin!r}: no free uid left in security.plugin_uid_range "
            f"{first}-{last}; widen the range or set security.plugin_uids: false",
        )


def host_knows(uid: int) -> bool:
    """True when the host's user or group database has this id (it is not ours to take)."""
    for lookup in (pwd.getpwuid, grp.getgrgid):
        with contextlib.suppress(KeyError):
            lookup(uid)
            return True
    return False


def allocate(
    name: str,
    assigned: Mapping[str, int],
    first: int,
    last: int,
    in_use: Callable[[int], bool] = host_knows,
) -> int:
    """The uid for plugin ``name``: its recorded one if still valid, else the first free one.

    A recorded uid stays while it is in the range, unique to ``name`` and unknown to the host.
    A new one is searched from a start derived from the name (crc32), wrapping around.
    """
    others = {uid for other, uid in assigned.items() if other != name}
    current = assigned.get(name)
    if (
        current is not None
        and first <= current <= last
        and current not in others
        and not in_use(current)
    ):
        return current
    size = last - first + 1
    start = zlib.crc32(name.encode()) % size
    for step in range(size):
        uid = first + (start + step) % size
        if uid not in others and not in_use(uid):
            return uid
    raise UidRangeExhausted(name, first, last)


def _load(path: Path) -> dict[str, int]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): v for k, v in data.items() if isinstance(v, int)}


def _save(path: Path, mapping: Mapping[str, int]) -> None:
    text = json.dumps(dict(sorted(mapping.items())), indent=1)
    write_atomically(path, text.encode(), private=True)


def plugin_uid(state_dir: Path, name: str, first: int, last: int) -> int:
    """The uid (= gid) of plugin ``name``, recorded in ``<state_dir>/uids.json``."""
    path = state_dir / FILE_NAME
    assigned = _load(path)
    uid = allocate(name, assigned, first, last)
    if assigned.get(name) != uid:
        assigned[name] = uid
        state_dir.mkdir(parents=True, exist_ok=True)
        _save(path, assigned)
    return uid


def own_data_dir(data_dir: Path, uid: int, gid: int) -> None:
    """Hand ``data_dir`` (and what is in it) to ``uid``: owner only, mode 0700.

    Its parent (``<state-dir>/data``) becomes 0711: plugins must traverse it to reach their
    own folder, but not see which others exist. Symlinks are re-owned, never followed.
    """
    parent = data_dir.parent
    if parent.stat().st_mode & 0o777 != 0o711:
        os.chmod(parent, 0o711)
    if data_dir.lstat().st_uid != uid:
        for folder, dirs, files in os.walk(data_dir):
            for entry in (*dirs, *files):
                os.lchown(os.path.join(folder, entry), uid, gid)
        os.lchown(data_dir, uid, gid)
    os.chmod(data_dir, 0o700)


_PROBE = (
    "import os, sys\n"
    "import rosey.sdk.runner\n"
    "if not os.access(sys.argv[1], os.X_OK):\n"
    "    sys.exit(f'cannot enter the state folder {sys.argv[1]}')\n"
)


@functools.cache
def unavailable(uid: int, state_dir: Path) -> str | None:
    """Why a process of ``uid`` could not run a plugin here (None: it can). Logged once.

    Runs the runner's imports as ``uid`` (no groups) and checks it can enter ``state_dir``:
    the same reach a plugin needs before its own folders are checked.
    """
    try:
        done = subprocess.run(
            [sys.executable, "-I", "-c", _PROBE, str(state_dir)],
            user=uid,
            group=uid,
            extra_groups=[],
            cwd="/",
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        reason = f"cannot run {sys.executable} as uid {uid}: {exc}"
    else:
        lines = done.stderr.strip().splitlines()
        reason = (lines[-1] if lines else f"exit {done.returncode}") if done.returncode else ""
    if not reason:
        return None
    log.warning(
        "sandbox: plugins cannot have uids of their own (security.plugin_uids): a process of "
        "uid %d cannot run the plugin runtime: %s. Make the interpreter, the rosey package "
        "and the state folder readable by other users; until then plugins run as the bot's "
        "uid and status shows missing:uid",
        uid,
        reason,
    )
    return reason
