"""The data-folder quota (``limits.data_mb``): a plugin cannot fill the host's disk.

A plugin may write only in its data folder (``<state-dir>/data/<plugin>/``, its working
directory; Landlock refuses every other path). Without a quota that folder could still fill
the disk the bot, the broker and every other plugin write to. ``RLIMIT_FSIZE`` caps one file,
not the folder. Two layers, the best the host offers:

``quota-loop`` (the bot runs as root and the host has loop devices, ``mkfs.ext4``, ``mount``)
    The data folder *is* a filesystem of ``data_mb``: a sparse image file
    ``<state-dir>/quota/<plugin>.img`` (ext4, no journal, no reserved blocks, so a root plugin
    gets no extra room) loop-mounted on the folder with ``nosuid,nodev,noexec,discard`` before
    the plugin is spawned. The kernel refuses the write that does not fit (``ENOSPC``); the
    plugin sees the error and keeps running. The mount stays across restarts within one bot
    run (a reuse costs one read of the mount table), is grown (offline ``resize2fs``: online
    growing needs ``CAP_SYS_RESOURCE``) when ``data_mb`` rises, is unmounted when the bot stops,
    by the warden when the bot dies, and at the next start if both were killed. Files already
    in a folder that becomes a mount are moved into the image first; when they do not fit, the
    plugin does not start (``DataQuotaExceeded``) and the files stay where they are.
    ``discard`` hands deleted blocks back to the host, so the image takes what is used.
    A new image is a sparse copy of one made by ``mkfs.ext4`` once per size and bot run, and
    is mounted by system calls (loop ioctls, ``mount(2)``): no process per plugin, so 100
    cold plugins cost ~0.3 s of CPU instead of ~1.3 s (``bench/quota_prepare.py``).

``quota-watch`` (not root, no loop devices, a mount that failed, or ``security.data_quota:
false``): no kernel quota for the folder. ``RLIMIT_FSIZE`` holds each file to ``data_mb``,
a thread measures each watched folder every ``check_interval`` s, and a plugin found over its
quota is killed (its ``last_error`` says "data folder over its quota of N MB"); a folder that is
over its quota before a start refuses the start. Between two checks a plugin can write more
than its quota: the layer's name says the kernel is not enforcing it.

The layer is reported per plugin in its status ``layers``. The pure parts (which layer, what to
do with an image, whether a folder is over) are functions of their inputs; the shell that makes,
mounts, resizes and fills an image is ``rosey.sandbox.quota_image`` (its system calls:
``rosey.sandbox.loopmount``).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from rosey.errors import DataQuotaExceeded
from rosey.sandbox import mounts, quota_image
from rosey.sandbox.limits import MIB
from rosey.sandbox.quota_image import TOOLS, folder_bytes, resize_action, to_mb
from rosey.sandbox.wardenlink import WardenLink

__all__ = [
    "LOOP",
    "WATCH",
    "DataQuota",
    "QuotaWatch",
    "choose_layer",
    "folder_bytes",
    "resize_action",
    "to_mb",
]

log = logging.getLogger("rosey.sandbox")

LOOP = "quota-loop"
WATCH = "quota-watch"


def choose_layer(
    *, enabled: bool, euid: int, loop_control: bool, missing_tools: list[str]
) -> tuple[str, str | None]:
    """The quota layer for this bot and, when it is the fallback, why (for logs and docs)."""
    if not enabled:
        return WATCH, "security.data_quota is false"
    if euid != 0:
        return WATCH, "the bot does not run as root (mounting a loop filesystem needs it)"
    if not loop_control:
        return WATCH, "the host has no loop devices (/dev/loop-control)"
    if missing_tools:
        return WATCH, f"{', '.join(missing_tools)} not found on PATH"
    return LOOP, None


@dataclass(eq=False)  # one per process: compared by identity
class QuotaWatch:
    """One plugin process whose data folder the watch thread measures (``quota-watch``)."""

    name: str
    pid: int
    folder: Path
    quota_mb: int
    pidfd: int
    #: Set by the watch thread when it found the folder over its quota (and killed the plugin).
    over_bytes: int = 0
    closed: bool = False

    @property
    def over_mb(self) -> int:
        return to_mb(self.over_bytes) if self.over_bytes else 0


class DataQuota:
    """The data-folder quotas of one bot (see the module notes)."""

    def __init__(
        self,
        state_dir: Path,
        *,
        enabled: bool = True,
        warden: WardenLink | None = None,
        check_interval: float = 1.0,
        direct: bool = True,
    ) -> None:
        """``direct=False``: each new image made by ``mkfs.ext4`` and mounted by ``mount``
        (the way before templates and system calls; for benchmarks and tests)."""
        state = state_dir.resolve()  # the mount table shows resolved paths
        self.images = state / "quota"
        self.data_root = state / "data"
        self.enabled = enabled
        self.warden = warden
        self.check_interval = check_interval
        self.layer: str = WATCH
        #: Why the fallback is in use (None: the quota filesystem is).
        self.note: str | None = "not opened yet"
        self._layers: dict[str, str] = {}  # plugin → the layer its folder got
        self._mounted: dict[str, Path] = {}  # plugin → its mounted data folder
        #: The tables (``_mounted``, ``_layers``, ``_watched``) and the warden's mount list.
        self._lock = threading.Lock()
        #: One prepare per plugin at a time; different plugins' run at once (a cold one waits
        #: on the kernel, or on ``mkfs``/``mount``: 100 cold plugins must not queue behind one).
        self._plugin_locks: dict[str, threading.Lock] = {}
        self._preparing = 0  # prepares under way (``release_all`` waits for them)
        self._idle = threading.Condition(self._lock)
        self._watched: list[QuotaWatch] = []
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        #: New images are copies of one ``mkfs.ext4`` per size, mounted by system calls.
        self._templates = quota_image.ImageTemplates(self.images) if direct else None
        self._mounter = quota_image.ImageMounter(direct=direct)

    # --- bot lifetime -------------------------------------------------------------------

    def open(self) -> None:
        """Unmount what a crashed bot left mounted here; decide the layer."""
        self.clean_stale()
        missing = [tool for tool in TOOLS if shutil.which(tool) is None]
        self.layer, self.note = choose_layer(
            enabled=self.enabled,
            euid=os.geteuid(),
            loop_control=os.path.exists("/dev/loop-control"),
            missing_tools=missing,
        )
        if self.note is None:
            log.info("sandbox: data folders are quota filesystems (%s)", LOOP)
        else:
            log.warning(
                "sandbox: data folders have no kernel-enforced quota (%s): %s; each file is "
                "capped by RLIMIT_FSIZE and folders are measured every %g s",
                WATCH,
                self.note,
                self.check_interval,
            )

    def clean_stale(self) -> list[str]:
        """Unmount every mount below this bot's data folder (a crashed bot's); which ones."""
        stale = mounts.mounts_under(mounts.read_mounts(), str(self.data_root))
        for entry in stale:
            log.warning("sandbox: unmounting %s, left mounted by a previous run", entry.target)
            quota_image.unmount(entry.target)
        quota_image.ImageTemplates(self.images).clear()  # a crashed run's
        with contextlib.suppress(FileNotFoundError):
            for leftover in self.images.glob("*.migrate"):
                with contextlib.suppress(OSError):
                    mounts.unmount(str(leftover), lazy=True)
                with contextlib.suppress(OSError):
                    leftover.rmdir()
        return [entry.target for entry in stale]

    def release_all(self) -> None:
        """Stop watching; unmount every data folder this bot mounted. Idempotent."""
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        with self._lock:
            # A prepare still under way would mount after this: let it finish first.
            self._idle.wait_for(lambda: self._preparing == 0, timeout=30)
            folders = list(self._mounted.values())
            mounts.unmount_all([str(folder) for folder in folders], quota_image.unmount)
            if self.warden is not None:
                for folder in folders:
                    self.warden.forget_mount(folder)
            self._mounted.clear()
            for watch in self._watched:
                self._close_watch(watch)
            self._watched.clear()
        if self._templates is not None:
            self._templates.clear()

    # --- one plugin -----------------------------------------------------------------------

    def layer_of(self, name: str) -> str:
        """The layer ``name``'s data folder got from its last ``prepare``."""
        return self._layers.get(name, self.layer)

    def prepare(self, name: str, data_dir: Path, quota_mb: int) -> str:
        """Make ``data_dir`` ready for a spawn of ``name``; the layer that holds it.

        Blocking (it may run ``mkfs`` and ``mount``): call it from a worker thread. Raises
        ``DataQuotaExceeded`` when the folder already holds more than ``quota_mb``.
        """
        folder = data_dir.resolve()
        with self._lock:
            plugin_lock = self._plugin_locks.setdefault(name, threading.Lock())
            self._preparing += 1
        try:
            with plugin_lock:
                return self._prepare(name, folder, quota_mb)
        finally:
            with self._lock:
                self._preparing -= 1
                self._idle.notify_all()

    def _prepare(self, name: str, folder: Path, quota_mb: int) -> str:
        """``prepare``, with ``name``'s own lock held (not the tables' one)."""
        layer = WATCH
        if self.layer == LOOP:
            started = time.monotonic()
            try:
                reused = self._prepare_loop(name, folder, quota_mb)
            except OSError as exc:
                log.warning(
                    "%s: no quota filesystem for its data folder (%s); falling back to %s",
                    name,
                    exc,
                    WATCH,
                )
            else:
                layer = LOOP
                log.debug(
                    "%s: data folder %s in %.1f ms",
                    name,
                    "reused" if reused else "mounted",
                    (time.monotonic() - started) * 1000,
                )
        if layer == WATCH:
            folder.mkdir(parents=True, exist_ok=True)
            used = folder_bytes(folder)
            if used > quota_mb * MIB:
                raise DataQuotaExceeded(name, str(folder), to_mb(used), quota_mb)
        with self._lock:
            self._layers[name] = layer
        return layer

    def watch(self, name: str, pid: int, data_dir: Path, quota_mb: int) -> QuotaWatch | None:
        """Measure ``pid``'s data folder until ``forget``; None if ``pid`` is gone already."""
        try:
            pidfd = os.pidfd_open(pid)  # signals through it can never reach a reused pid
        except OSError:
            return None
        watch = QuotaWatch(name, pid, data_dir.resolve(), quota_mb, pidfd)
        with self._lock:
            self._watched.append(watch)
            if self._thread is None:
                self._wake.clear()
                self._thread = threading.Thread(
                    target=self._watch_loop, name="rosey data-folder watch", daemon=True
                )
                self._thread.start()
        return watch

    def forget(self, watch: QuotaWatch) -> None:
        """The process is gone: stop measuring its folder."""
        with self._lock:
            if watch in self._watched:
                self._watched.remove(watch)
            self._close_watch(watch)

    # --- quota-loop -----------------------------------------------------------------------

    def _prepare_loop(self, name: str, folder: Path, quota_mb: int) -> bool:
        """Mount (or keep) ``name``'s image on ``folder``; True when it was mounted already."""
        image = self.images / f"{name}.img"
        wanted = quota_mb * MIB
        with self._lock:
            ours = self._mounted.get(name) == folder
        # A restart finds its image mounted already: a stat tells, not a parse of every mount
        # of the machine (hundreds with many plugins); anything else reads the mount table.
        mounted = (ours and os.path.ismount(folder)) or (
            mounts.mount_at(mounts.read_mounts(), str(folder)) is not None
        )
        if mounted and ours:
            action = resize_action(image.stat().st_size, wanted)
            if action == "keep":
                return True
            if action == "shrink":
                log.warning(
                    "%s: limits.data_mb went down to %d MB; the mounted quota keeps %d MB until "
                    "the bot restarts",
                    name,
                    quota_mb,
                    to_mb(image.stat().st_size),
                )
                return True
            try:  # grow: offline, so only when no process of the plugin still uses it
                mounts.unmount(str(folder))
            except OSError as exc:
                log.warning("%s: cannot grow its data quota while in use (%s)", name, exc)
                return True
            self._forget_mount(name, folder)
        elif mounted:
            raise OSError(errno.EBUSY, f"something else is mounted on {folder}")
        folder.mkdir(parents=True, exist_ok=True)
        self.images.mkdir(mode=0o700, parents=True, exist_ok=True)
        created = not image.exists()
        if created:
            used = folder_bytes(folder)
            if used > wanted:  # checked before anything is created: the files stay as they are
                raise DataQuotaExceeded(name, str(folder), to_mb(used), quota_mb)
            quota_image.create(image, wanted, self._templates)
        else:
            quota_image.resize(name, image, wanted)
        staging = self.images / f"{name}.migrate"
        try:
            quota_image.migrate(
                name, image, folder, quota_mb, staging, self._mounter, fresh=created
            )
        except BaseException:
            if created:
                image.unlink(missing_ok=True)
            raise
        quota_image.mount(image, folder, adopt=created, mounter=self._mounter)
        with self._lock:
            self._mounted[name] = folder
            if self.warden is not None:
                self.warden.watch_mount(folder)
        return False

    def _forget_mount(self, name: str, folder: Path) -> None:
        with self._lock:
            self._mounted.pop(name, None)
            if self.warden is not None:
                self.warden.forget_mount(folder)

    # --- quota-watch ----------------------------------------------------------------------

    def _watch_loop(self) -> None:
        """Measure every watched folder each ``check_interval`` s; kill what is over."""
        while not self._wake.wait(self.check_interval):
            with self._lock:
                watched = list(self._watched)
            for watch in watched:
                used = folder_bytes(watch.folder)
                if used > watch.quota_mb * MIB:
                    self._enforce(watch, used)

    def _enforce(self, watch: QuotaWatch, used: int) -> None:
        """Record why and kill the plugin's process (its manager sees the exit and the reason).

        Under the lock: ``forget`` closes the pidfd, whose number could otherwise be reused
        by the time the signal is sent through it.
        """
        with self._lock:
            if watch.closed:
                return
            watch.over_bytes = used
            log.warning(
                "%s (pid %d): data folder over its quota of %d MB (%d MB); killing it",
                watch.name,
                watch.pid,
                watch.quota_mb,
                to_mb(used),
            )
            with contextlib.suppress(OSError):
                signal.pidfd_send_signal(watch.pidfd, signal.SIGKILL)
            if watch in self._watched:
                self._watched.remove(watch)
            self._close_watch(watch)

    @staticmethod
    def _close_watch(watch: QuotaWatch) -> None:
        if not watch.closed:
            watch.closed = True
            with contextlib.suppress(OSError):
                os.close(watch.pidfd)
