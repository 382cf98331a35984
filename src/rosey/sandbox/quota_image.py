"""The ``quota-loop`` layer's shell: a plugin's data folder as a loop-mounted ext4 image.

``rosey.sandbox.quota.DataQuota`` decides when (and keeps the table of what it mounted); this
module does it: create a sparse image (``mkfs.ext4``), grow or lower it (``e2fsck`` +
``resize2fs``), move the files a bare folder held into it (``cp -a``), mount it with
``MOUNT_OPTIONS`` and unmount it. Each step either completes or leaves things as they were
(a half-made image is deleted; a resize that fails keeps the image at the size it has).
Blocking: called from a worker thread. Also the small measures both layers share
(``folder_bytes``, ``to_mb``, ``resize_action``).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import subprocess
from pathlib import Path
from typing import Literal

from rosey.errors import DataQuotaExceeded
from rosey.sandbox import mounts
from rosey.sandbox.limits import MIB

__all__ = [
    "MKFS_OPTIONS",
    "MOUNT_OPTIONS",
    "TOOLS",
    "create",
    "folder_bytes",
    "migrate",
    "mount",
    "resize",
    "resize_action",
    "run_tool",
    "to_mb",
    "unmount",
]

log = logging.getLogger("rosey.sandbox")

#: Options of every data-folder mount: nothing set-uid, no device nodes, nothing executable.
MOUNT_OPTIONS = "loop,nosuid,nodev,noexec,discard"
#: ``mkfs.ext4`` options: no journal (less overhead, nothing to replay), no blocks reserved
#: for root (plugins may run as root: they would get them).
MKFS_OPTIONS = ("-q", "-F", "-O", "^has_journal", "-m", "0")
TOOLS = ("mkfs.ext4", "mount", "resize2fs", "e2fsck", "cp")
_COMMAND_TIMEOUT = 60.0


def resize_action(current_bytes: int, wanted_bytes: int) -> Literal["keep", "grow", "shrink"]:
    """What an existing image of ``current_bytes`` needs to hold ``wanted_bytes``."""
    if current_bytes == wanted_bytes:
        return "keep"
    return "grow" if current_bytes < wanted_bytes else "shrink"


def to_mb(size: int) -> int:
    """Bytes → whole MB, rounded up (so "over by a byte" never reads as "at the quota")."""
    return -(-size // MIB)


def folder_bytes(folder: Path) -> int:
    """Disk space the files below ``folder`` take (allocated blocks: a sparse file's holes
    take none); symlinks are not followed, unreadable entries count as nothing."""
    total = 0
    stack = [str(folder)]
    while stack:
        current = stack.pop()
        try:
            with os.scandir(current) as it:
                for entry in it:
                    with contextlib.suppress(OSError):
                        st = entry.stat(follow_symlinks=False)
                        total += st.st_blocks * 512
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
        except OSError:
            continue
    return total


def run_tool(*argv: str, ok: tuple[int, ...] = (0,)) -> None:
    """Run one tool; ``OSError`` with its output when its exit code is not in ``ok``."""
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=_COMMAND_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        raise OSError(
            errno.ETIMEDOUT, f"{argv[0]} did not finish within {_COMMAND_TIMEOUT:g} s"
        ) from None
    if done.returncode not in ok:
        said = (done.stderr or done.stdout).strip().splitlines()
        last = said[-1] if said else "no output"
        raise OSError(errno.EIO, f"{argv[0]} failed (exit {done.returncode}): {last}")


def create(image: Path, size: int) -> None:
    """A sparse ext4 image of ``size`` bytes; renamed into place only once complete."""
    fresh = image.with_suffix(".img.new")
    with open(fresh, "wb") as fh:
        fh.truncate(size)
    try:
        run_tool("mkfs.ext4", *MKFS_OPTIONS, str(fresh))
        fresh.rename(image)
    except BaseException:
        fresh.unlink(missing_ok=True)
        raise


def resize(name: str, image: Path, wanted: int) -> None:
    """Bring an unmounted image to ``wanted`` bytes; a shrink that cannot fit is skipped."""
    size = image.stat().st_size
    action = resize_action(size, wanted)
    if action == "keep":
        return
    try:
        # resize2fs wants a freshly checked filesystem; 1 = "corrected" (e.g. it put back
        # the lost+found that ``mount`` removes).
        run_tool("e2fsck", "-f", "-p", str(image), ok=(0, 1))
        if action == "grow":
            with open(image, "r+b") as fh:
                fh.truncate(wanted)
            run_tool("resize2fs", str(image))
        else:  # shrink: fails, changing nothing, when the files do not fit
            run_tool("resize2fs", str(image), f"{wanted // 1024}K")
            with open(image, "r+b") as fh:
                fh.truncate(wanted)
    except OSError as exc:
        # The image is still whole (resize2fs grows into a longer file, or leaves it):
        # mount it at the size it has rather than leave the plugin without its files.
        log.warning(
            "%s: cannot %s its data quota to %d MB (%s); it keeps %d MB",
            name,
            action,
            to_mb(wanted),
            exc,
            to_mb(image.stat().st_size),
        )
        return
    done = "grown" if action == "grow" else "lowered"
    log.info("%s: data quota %s to %d MB", name, done, to_mb(wanted))


def migrate(name: str, image: Path, folder: Path, quota_mb: int, staging: Path) -> None:
    """Move files in the bare ``folder`` into ``image`` (the first time it becomes a mount,
    or files put there while the bot was down). Copy first, delete after: a crash between
    the two leaves files that the next start copies again. ``staging`` is where the image is
    mounted meanwhile (a folder of the bot's own, created here and removed after)."""
    entries = list(folder.iterdir())
    if not entries:
        return
    staging.mkdir(mode=0o700, exist_ok=True)
    run_tool("mount", "-t", "ext4", "-o", MOUNT_OPTIONS, str(image), str(staging))
    try:
        try:
            run_tool("cp", "-a", "--", f"{folder}/.", f"{staging}/")
        except OSError:
            used = folder_bytes(folder)
            if used > quota_mb * MIB:
                raise DataQuotaExceeded(name, str(folder), to_mb(used), quota_mb) from None
            raise
    finally:
        unmount(str(staging))
        with contextlib.suppress(OSError):
            staging.rmdir()
    for entry in entries:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    log.info("%s: moved %d file(s) into its data quota image", name, len(entries))


def mount(image: Path, folder: Path, *, adopt: bool) -> None:
    """Mount ``image`` on ``folder``. ``adopt`` (a new image): its root takes the owner and
    mode the bare folder had; an older image keeps its own (set on an earlier run)."""
    before = folder.stat()
    run_tool("mount", "-t", "ext4", "-o", MOUNT_OPTIONS, str(image), str(folder))
    try:
        if adopt:
            os.chown(folder, before.st_uid, before.st_gid)
            os.chmod(folder, before.st_mode & 0o7777)
        with contextlib.suppress(OSError):  # mkfs's, empty: the plugin did not put it there
            (folder / "lost+found").rmdir()
    except BaseException:
        unmount(str(folder))
        raise


def unmount(target: str) -> None:
    """Unmount now, or detach lazily when a process still holds a file there."""
    try:
        mounts.unmount(target)
    except OSError as exc:
        if exc.errno == errno.EINVAL:  # not mounted (any more)
            return
        try:
            mounts.unmount(target, lazy=True)
        except OSError as lazy_exc:
            log.error("sandbox: cannot unmount %s: %s", target, lazy_exc)
        else:
            log.warning("sandbox: %s was busy (%s); detached lazily", target, exc.strerror)
