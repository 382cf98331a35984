"""Running the bot as an unprivileged user in tests (``run_bot(..., unprivileged=True)``).

Operators usually run Rosey as an ordinary user; here the tests run as root. To test both, the
harness creates (once) the system user ``rosey-test`` and starts ``rosey run`` under it with
``setpriv``. That user must be able to reach the interpreter and the test's folders:

- the interpreter may live below a folder only root may enter (``/root/.pyenv`` here): the user
  gets *traverse* (``x``) on exactly those folders through a POSIX ACL entry of its own, which
  lists nothing and reads nothing (``o+x`` only where the filesystem has no ACLs);
- pytest's ``tmp_path`` is ``0700`` below ``/tmp/pytest-of-root``: the same traverse right there,
  and the test's folder becomes readable, with a state folder owned by the user.

Standard library only; idempotent; Linux only.
"""

from __future__ import annotations

import errno
import os
import pwd
import stat
import struct
import subprocess
import sys
from pathlib import Path

USER = "rosey-test"

# POSIX ACL xattr layout (linux/posix_acl_xattr.h): a version, then (tag, perm, id) entries.
_ACL_VERSION = 2
_USER_OBJ, _USER, _GROUP_OBJ, _MASK, _OTHER = 0x01, 0x02, 0x04, 0x10, 0x20
_UNDEFINED_ID = 0xFFFFFFFF
_X = 1


def ensure_user() -> pwd.struct_passwd:
    """The unprivileged test user, created on first use (a system user without a home)."""
    try:
        return pwd.getpwnam(USER)
    except KeyError:
        pass
    done = subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", USER],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode not in (0, 9):  # 9: created meanwhile by another test process
        raise RuntimeError(f"cannot create the test user {USER!r}: {done.stderr.strip()}")
    return pwd.getpwnam(USER)


def _read_acl(folder: Path) -> list[tuple[int, int, int]] | None:
    """The folder's access ACL entries, or None when it has none (only mode bits)."""
    try:
        raw = os.getxattr(folder, "system.posix_acl_access")
    except OSError as exc:
        if exc.errno in (errno.ENODATA, errno.EOPNOTSUPP, errno.ENOTSUP):
            return None
        raise
    return [struct.unpack_from("<HHI", raw, offset) for offset in range(4, len(raw), 8)]


def _with_traverse(entries: list[tuple[int, int, int]], uid: int) -> bytes:
    """``entries`` plus ``user:<uid>:--x``, the mask widened to let it through; others kept.

    Merging (not replacing) matters: other tests may have added entries for other users.
    """
    kept = [e for e in entries if not (e[0] == _USER and e[2] == uid) and e[0] != _MASK]
    mine = next((e[1] for e in entries if e[0] == _USER and e[2] == uid), 0) | _X
    mask = next((e[1] for e in entries if e[0] == _MASK), None)
    if mask is None:  # no named entries yet: the mask starts from the owning group's bits
        mask = next(e[1] for e in entries if e[0] == _GROUP_OBJ)
    merged = [*kept, (_USER, mine, uid), (_MASK, mask | _X, _UNDEFINED_ID)]
    merged.sort(key=lambda e: (e[0], e[2]))  # the kernel wants tag order, users by id
    return struct.pack("<I", _ACL_VERSION) + b"".join(struct.pack("<HHI", *e) for e in merged)


def folders_leading_to(path: Path) -> list[Path]:
    """Every folder above ``path``, outermost first, both as written and with links resolved.

    Both matter: ``.venv/bin/python`` in a clone is reached through the clone's folders (its
    ``site-packages`` lives there), and it is a link to an interpreter elsewhere.
    """
    seen = dict.fromkeys([*reversed(path.absolute().parents), *reversed(path.resolve().parents)])
    return list(seen)


def grant_traverse(path: Path, uid: int) -> None:
    """Let ``uid`` pass through every folder leading to ``path`` that it could not pass.

    Always rewritten, never skipped: a ``chmod`` (pytest does ``chmod 0700`` on its base folder
    at every session) narrows the ACL mask, which silently voids an entry made before.
    """
    for folder in folders_leading_to(path):
        info = folder.stat()
        if info.st_mode & stat.S_IXOTH:
            continue
        mode = stat.S_IMODE(info.st_mode)
        entries = _read_acl(folder)
        if entries is None:
            entries = [
                (_USER_OBJ, (mode >> 6) & 7, _UNDEFINED_ID),
                (_GROUP_OBJ, (mode >> 3) & 7, _UNDEFINED_ID),
                (_OTHER, mode & 7, _UNDEFINED_ID),
            ]
        try:
            os.setxattr(folder, "system.posix_acl_access", _with_traverse(entries, uid))
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.ENOTSUP):
                raise
            os.chmod(folder, mode | stat.S_IXOTH)


def prepare(tmp_path: Path) -> tuple[pwd.struct_passwd, Path]:
    """The test user, and a state folder below ``tmp_path`` that it owns.

    ``tmp_path`` itself becomes readable by others, so that plugin folders a test copies there
    can be read by the bot.
    """
    user = ensure_user()
    grant_traverse(Path(sys.executable), user.pw_uid)
    grant_traverse(tmp_path / "x", user.pw_uid)
    os.chmod(tmp_path, 0o755)
    state_dir = tmp_path / "state"
    state_dir.mkdir(exist_ok=True)
    os.chown(state_dir, user.pw_uid, user.pw_gid)
    return user, state_dir


def command_as(user: pwd.struct_passwd, argv: list[str]) -> list[str]:
    """``argv`` run as ``user`` (no supplementary groups, no capabilities)."""
    return [
        "setpriv",
        f"--reuid={user.pw_uid}",
        f"--regid={user.pw_gid}",
        "--clear-groups",
        "--inh-caps=-all",
        "--",
        *argv,
    ]
