"""The ``quota-loop`` layer's shell: a plugin's data folder as a loop-mounted ext4 image.

``rosey.sandbox.quota.DataQuota`` decides when (and keeps the table of what it mounted); this
module does it: create a sparse image (a copy of an empty one made once per size by
``mkfs.ext4``: ``ImageTemplates``), grow or lower it (``e2fsck`` + ``resize2fs``), move the
files a bare folder held into it (``cp -a``), mount it with ``MOUNT_OPTIONS`` (loop device and
``mount(2)`` by system calls, ``ImageMounter``; the ``mount`` tool where they are refused) and
unmount it. A cold start of 100 plugins so runs no process per plugin (``mkfs.ext4`` and
``mount`` took ~16 ms of CPU each). Each step either completes or leaves things as they were
(a half-made image is deleted; a resize that fails keeps the image at the size it has).
Blocking: called from a worker thread. Also the small measures both layers share
(``folder_bytes``, ``to_mb``, ``resize_action``).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Literal

from rosey.errors import DataQuotaExceeded
from rosey.sandbox import loopmount, mounts
from rosey.sandbox.limits import MIB

__all__ = [
    "MKFS_OPTIONS",
    "MOUNT_OPTIONS",
    "TOOLS",
    "ImageMounter",
    "ImageTemplates",
    "create",
    "data_ranges",
    "folder_bytes",
    "migrate",
    "mount",
    "resize",
    "resize_action",
    "run_tool",
    "sparse_copy",
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
FICLONE = 0x40049409  # ioctl: share all blocks of a file (btrfs, xfs)
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


def create(image: Path, size: int, templates: ImageTemplates | None = None) -> None:
    """A sparse ext4 image of ``size`` bytes; renamed into place only once complete.

    A copy of ``templates``' image of that size when there is one (~1 ms, no process), else
    (or when the copy fails) a ``mkfs.ext4`` of its own."""
    fresh = image.with_suffix(".img.new")
    try:
        template = templates.image_of(size) if templates is not None else None
        if template is not None:
            try:
                sparse_copy(template, fresh)
            except OSError as exc:
                log.warning("sandbox: cannot copy the image template %s (%s)", template, exc)
                template = None
        if template is None:
            with open(fresh, "wb") as fh:
                fh.truncate(size)
            run_tool("mkfs.ext4", *MKFS_OPTIONS, str(fresh))
        fresh.rename(image)
    except BaseException:
        fresh.unlink(missing_ok=True)
        raise


def sparse_copy(source: Path, target: Path) -> None:
    """Copy ``source`` to a new ``target`` taking no more disk: a reflink where the
    filesystem shares blocks (``FICLONE``), else its data ranges (``SEEK_DATA``/``SEEK_HOLE``,
    ``copy_file_range``) with holes kept; flushed to disk (a mount follows: it must not find
    a half-written image after a crash of the host)."""
    with open(source, "rb") as src, open(target, "wb") as dst:
        size = os.fstat(src.fileno()).st_size
        if not _reflink(src.fileno(), dst.fileno()):
            dst.truncate(size)
            for start, end in data_ranges(src.fileno(), size):
                offset = start
                while offset < end:
                    done = os.copy_file_range(
                        src.fileno(), dst.fileno(), end - offset, offset, offset
                    )
                    if done == 0:
                        raise OSError(errno.EIO, f"{source} ended early at byte {offset}")
                    offset += done
        os.fdatasync(dst.fileno())


def _reflink(source_fd: int, target_fd: int) -> bool:
    """``FICLONE``: True when the filesystem shares the blocks (btrfs, xfs); ext4 cannot."""
    try:
        fcntl.ioctl(target_fd, FICLONE, source_fd)
    except OSError:
        return False
    return True


def data_ranges(fd: int, size: int) -> list[tuple[int, int]]:
    """The ``(start, end)`` ranges of ``fd`` that hold data (not holes)."""
    ranges: list[tuple[int, int]] = []
    offset = 0
    while offset < size:
        try:
            start = os.lseek(fd, offset, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # only a hole from here to the end
                break
            raise
        end = os.lseek(fd, start, os.SEEK_HOLE)
        ranges.append((start, end))
        offset = end
    return ranges


class ImageTemplates:
    """One freshly made empty image per size (``mkfs.ext4`` once), copied for each new image.

    The templates live in ``folder`` (the images' one) for one bot run: ``clear`` removes them
    (``open`` removes a crashed run's), so a newer ``mkfs.ext4`` or different options apply at
    the next start. Thread-safe: prepares of several plugins ask at once; one makes it."""

    SUFFIX = ".tpl"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._lock = threading.Lock()
        self._made: dict[int, Path | None] = {}  # size → its template (None: mkfs failed)
        self._locks: dict[int, threading.Lock] = {}

    def image_of(self, size: int) -> Path | None:
        """The template of ``size`` bytes, made on first use; None if it cannot be made."""
        with self._lock:
            if size in self._made:
                return self._made[size]
            size_lock = self._locks.setdefault(size, threading.Lock())
        with size_lock:
            with self._lock:
                if size in self._made:
                    return self._made[size]
            path = self.folder / f"template-{size}{self.SUFFIX}"
            try:
                path.unlink(missing_ok=True)
                with open(path, "wb") as fh:
                    fh.truncate(size)
                run_tool("mkfs.ext4", *MKFS_OPTIONS, str(path))
            except OSError as exc:
                log.warning("sandbox: no image template of %d MB (%s)", to_mb(size), exc)
                path.unlink(missing_ok=True)
                made: Path | None = None
            else:
                made = path
            with self._lock:
                self._made[size] = made
            return made

    def clear(self) -> None:
        """Remove every template in the folder (this run's and any a crashed run left)."""
        with self._lock:
            self._made.clear()
            with contextlib.suppress(OSError):
                for path in self.folder.glob(f"template-*{self.SUFFIX}"):
                    path.unlink(missing_ok=True)


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


class ImageMounter:
    """Mounts images with ``MOUNT_OPTIONS``: by system calls (``rosey.sandbox.loopmount``), or
    by the ``mount`` tool: from the first refusal of the loop calls or of ``mount(2)`` on
    (logged, once per bot run), for an image a loop device holds already (``mount`` mounts
    that device rather than a second one), and for one mount whose calls failed otherwise.
    ``control``: the loop control device (another path in tests: a refusal)."""

    #: A refusal of the loop calls themselves (no loop driver, no device nodes, no right).
    REFUSED = frozenset(
        {errno.EPERM, errno.EACCES, errno.ENOTTY, errno.ENOSYS, errno.ENOENT, errno.ENXIO}
    )

    def __init__(self, *, direct: bool = True, control: str = loopmount.LOOP_CONTROL) -> None:
        #: Why the ``mount`` tool is used (None: the system calls are).
        self.refused: str | None = None if direct else "the system calls are switched off"
        self.control = control
        self.configure = True  # LOOP_CONFIGURE (else LOOP_SET_FD + LOOP_SET_STATUS64)

    def mount(self, image: Path, target: Path, *, fresh: bool = False) -> None:
        """Mount ``image`` on ``target``; ``fresh``: made in this run, so no loop device can
        hold it yet (no need to look)."""
        if self.refused is None and (fresh or loopmount.attached(image) is None):
            try:
                fd, device = self._bind(image)
            except OSError as exc:
                self._failed(exc, refused=exc.errno in self.REFUSED or exc.errno == errno.EINVAL)
            else:
                try:
                    loopmount.mount_device(device, str(target), "ext4", MOUNT_OPTIONS)
                    return
                except OSError as exc:
                    self._failed(exc, refused=exc.errno in (errno.EPERM, errno.EACCES))
                finally:
                    os.close(fd)  # mounted: the mount holds the device; not: autoclear frees it
        run_tool("mount", "-t", "ext4", "-o", MOUNT_OPTIONS, str(image), str(target))

    def _bind(self, image: Path) -> tuple[int, str]:
        try:
            return loopmount.bind(image, configure=self.configure, control=self.control)
        except OSError as exc:
            if not (self.configure and exc.filename == "LOOP_CONFIGURE"):
                raise
        self.configure = False  # a kernel before 5.8: the older pair of calls
        log.info("sandbox: LOOP_CONFIGURE refused; binding loop devices by LOOP_SET_FD")
        return loopmount.bind(image, configure=False, control=self.control)

    def _failed(self, exc: OSError, *, refused: bool) -> None:
        if refused:
            self.refused = str(exc)
            log.warning("sandbox: mounting data-folder images with the mount tool: %s", exc)
        else:
            log.warning("sandbox: %s (mounting with the mount tool)", exc)


def migrate(
    name: str,
    image: Path,
    folder: Path,
    quota_mb: int,
    staging: Path,
    mounter: ImageMounter | None = None,
    *,
    fresh: bool = False,
) -> None:
    """Move files in the bare ``folder`` into ``image`` (the first time it becomes a mount,
    or files put there while the bot was down). Copy first, delete after: a crash between
    the two leaves files that the next start copies again. ``staging`` is where the image is
    mounted meanwhile (a folder of the bot's own, created here and removed after)."""
    entries = list(folder.iterdir())
    if not entries:
        return
    staging.mkdir(mode=0o700, exist_ok=True)
    (mounter or ImageMounter()).mount(image, staging, fresh=fresh)
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


def mount(image: Path, folder: Path, *, adopt: bool, mounter: ImageMounter | None = None) -> None:
    """Mount ``image`` on ``folder``. ``adopt`` (a new image): its root takes the owner and
    mode the bare folder had; an older image keeps its own (set on an earlier run)."""
    before = folder.stat()
    (mounter or ImageMounter()).mount(image, folder, fresh=adopt)
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
