"""The quota filesystem without a process per plugin (issue 13, round 2).

A new data-folder image is a copy of one ``mkfs.ext4`` per size (``ImageTemplates``), bound to
a loop device by ``ioctl`` and mounted by ``mount(2)`` (``ImageMounter``). The tools are real
ones behind a wrapper on ``PATH`` that records each call, so a test can tell which ran. Every
guarantee of the ``mount -o loop`` way holds: the options, ``ENOSPC``, the adopted owner, the
loop device freed with the mount, a grow, the next start; a refused call falls back to the
tool with the reason logged; an image a loop device still holds is mounted through that device.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_security_quota import leftovers

from rosey.sandbox import loopmount, mounts, quota_image
from rosey.sandbox.quota import LOOP, DataQuota
from rosey.sandbox.warden import Warden

MIB = 1024 * 1024

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.exists("/dev/loop-control"),
    reason="the quota filesystem needs root and loop devices",
)


class Calls:
    """``mkfs.ext4`` and ``mount`` on ``PATH`` as wrappers that log each call, then run the
    real tool."""

    def __init__(self, folder: Path) -> None:
        self.log = folder / "calls.log"
        self.log.touch()
        bin_dir = folder / "bin"
        bin_dir.mkdir()
        for tool in ("mkfs.ext4", "mount"):
            real = shutil.which(tool)
            assert real is not None, tool
            wrapper = bin_dir / tool
            wrapper.write_text(f'#!/bin/sh\necho "{tool} $*" >> {self.log}\nexec {real} "$@"\n')
            wrapper.chmod(0o755)
        self.path = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"

    def of(self, tool: str) -> list[str]:
        return [line for line in self.log.read_text().splitlines() if line.startswith(tool)]


@pytest.fixture
def calls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Calls]:
    recorded = Calls(tmp_path)
    monkeypatch.setenv("PATH", recorded.path)
    yield recorded
    assert leftovers(tmp_path) == []


def mount_options(folder: Path) -> tuple[str, set[str], set[str]]:
    """(source, mount options, superblock options) of the mount at ``folder``."""
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            fields = line.split()
            if fields[4] == str(folder):
                dash = fields.index("-")
                options = set(fields[5].split(","))
                return fields[dash + 2], options, set(fields[dash + 3].split(","))
    raise AssertionError(f"{folder} is not mounted")


def fill(folder: Path) -> int:
    """Write into ``folder`` until the kernel refuses; the errno it refused with."""
    with open(folder / "fill", "wb") as fh:
        chunk = b"x" * MIB
        try:
            for _ in range(64):
                fh.write(chunk)
                fh.flush()
        except OSError as exc:
            return exc.errno or 0
    return 0


@pytest.mark.parametrize("direct", [True, False], ids=["syscalls", "processes"])
def test_new_images_are_copies_of_one_mkfs_per_size_mounted_by_system_calls(
    tmp_path: Path, calls: Calls, direct: bool
) -> None:
    state = tmp_path / "state"
    sizes = {"one": 8, "two": 8, "three": 16}
    for name in sizes:  # a bare folder of some user: the mount takes its owner and mode
        (state / "data" / name).mkdir(parents=True)
        os.chown(state / "data" / name, 4321, 4322)
        (state / "data" / name).chmod(0o750)
    quota = DataQuota(state, direct=direct)
    quota.open()
    assert quota.layer == LOOP
    layers: dict[str, str] = {}

    def prepare(name: str) -> None:
        layers[name] = quota.prepare(name, state / "data" / name, sizes[name])

    threads = [threading.Thread(target=prepare, args=(name,)) for name in sizes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert layers == dict.fromkeys(sizes, LOOP)
    # The new way runs mkfs once per size and no mount at all; the old one both per plugin.
    assert len(calls.of("mkfs.ext4")) == (2 if direct else 3)
    assert len(calls.of("mount")) == (0 if direct else 3)
    for name, mb in sizes.items():
        folder = state / "data" / name
        source, options, super_options = mount_options(folder)
        assert source.startswith("/dev/loop"), source
        assert {"nosuid", "nodev", "noexec"} <= options, options
        assert "discard" in super_options, super_options
        device = Path(source).name
        assert Path(f"/sys/block/{device}/loop/autoclear").read_text().strip() == "1"
        st = folder.stat()
        assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (4321, 4322, 0o750)
        assert not (folder / "lost+found").exists()
        fs = os.statvfs(folder)
        assert fs.f_blocks * fs.f_frsize <= mb * MIB
    assert fill(state / "data" / "one") == errno.ENOSPC
    assert (state / "quota" / "one.img").stat().st_blocks * 512 <= 8 * MIB
    quota.release_all()
    assert not any(p.suffix == ".tpl" for p in (state / "quota").iterdir())


def test_a_grown_quota_and_the_next_start_keep_the_files(tmp_path: Path, calls: Calls) -> None:
    state = tmp_path / "state"
    folder = state / "data" / "keeper"
    quota = DataQuota(state)
    quota.open()
    assert quota.prepare("keeper", folder, 8) == LOOP
    (folder / "note").write_text("kept")
    fs = os.statvfs(folder)
    assert fs.f_blocks * fs.f_frsize <= 8 * MIB
    assert quota.prepare("keeper", folder, 16) == LOOP  # grown: unmounted, resized, mounted
    fs = os.statvfs(folder)
    assert 8 * MIB < fs.f_blocks * fs.f_frsize <= 16 * MIB
    assert (folder / "note").read_text() == "kept"
    quota.release_all()
    again = DataQuota(state)  # the next bot start: the image exists, it is mounted again
    again.open()
    assert again.prepare("keeper", folder, 16) == LOOP
    assert (folder / "note").read_text() == "kept"
    again.release_all()
    assert calls.of("mount") == []
    assert not folder.is_mount()


def test_a_refused_loop_call_falls_back_to_the_mount_tool_and_says_why(
    tmp_path: Path, calls: Calls, caplog: pytest.LogCaptureFixture
) -> None:
    not_a_loop_control = tmp_path / "loop-control"
    not_a_loop_control.touch()  # opens fine; its ioctl is refused (ENOTTY)
    mounter = quota_image.ImageMounter(control=str(not_a_loop_control))
    templates = quota_image.ImageTemplates(tmp_path)
    for name in ("a", "b"):
        image = tmp_path / f"{name}.img"
        quota_image.create(image, 8 * MIB, templates)
        (tmp_path / name).mkdir()
        with caplog.at_level(logging.WARNING, logger="rosey.sandbox"):
            mounter.mount(image, tmp_path / name, fresh=True)
        assert (tmp_path / name).is_mount()
    assert mounter.refused is not None
    assert "LOOP_CTL_GET_FREE" in mounter.refused
    warnings = [r.getMessage() for r in caplog.records if "with the mount tool" in r.getMessage()]
    assert len(warnings) == 1, warnings  # said once; the second went to the tool directly
    assert len(calls.of("mount")) == 2
    assert mounts.unmount_all([str(tmp_path / "a"), str(tmp_path / "b")]) == {}
    templates.clear()


def test_an_image_a_loop_device_still_holds_is_mounted_through_that_device(
    tmp_path: Path, calls: Calls
) -> None:
    """A lazily detached mount (a process still had a file open) keeps its loop device: a
    second device on the same image would be a second filesystem writing the same file."""
    image = tmp_path / "held.img"
    quota_image.create(image, 8 * MIB, None)
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    mounter = quota_image.ImageMounter()
    assert loopmount.attached(image) is None
    mounter.mount(image, first)
    (first / "f").write_text("one filesystem")
    with open(first / "f") as held:
        mounts.unmount(str(first), lazy=True)
        device = loopmount.attached(image)
        assert device is not None
        mounter.mount(image, second)
        assert mount_options(second)[0] == device  # the same device, so the same filesystem
        assert (second / "f").read_text() == "one filesystem"
        assert held.read() == "one filesystem"
    assert len(calls.of("mount")) == 1
    assert mounter.refused is None  # not a refusal: the next new image goes by system calls
    mounts.unmount(str(second))


def test_the_older_loop_calls_bind_with_autoclear(tmp_path: Path) -> None:
    """``LOOP_SET_FD`` + ``LOOP_SET_STATUS64``: what kernels before ``LOOP_CONFIGURE`` have."""
    image = tmp_path / "old.img"
    image.write_bytes(b"\0" * MIB)
    fd, device = loopmount.bind(image, configure=False)
    sysfs = Path(f"/sys/block/{Path(device).name}/loop")
    try:
        assert (sysfs / "backing_file").read_text().strip() == str(image)
        assert (sysfs / "autoclear").read_text().strip() == "1"
        assert loopmount.attached(image) == device
    finally:
        os.close(fd)
    assert not sysfs.exists()  # autoclear: unbound with its last user
    out = subprocess.run(["losetup", "-a"], capture_output=True, text=True, check=False).stdout
    assert str(tmp_path) not in out


def test_the_warden_unmounts_every_data_folder_at_once_a_busy_one_lazily(
    tmp_path: Path, calls: Calls, capfd: pytest.CaptureFixture[str]
) -> None:
    templates = quota_image.ImageTemplates(tmp_path)
    mounter = quota_image.ImageMounter()
    warden = Warden(bot_pid=os.getpid())
    folders = [tmp_path / f"data{i}" for i in range(5)]
    for i, folder in enumerate(folders):
        folder.mkdir()
        image = tmp_path / f"data{i}.img"
        quota_image.create(image, 8 * MIB, templates)
        mounter.mount(image, folder, fresh=True)
        assert warden.handle(f"mount {folder}")
    with open(folders[0] / "held", "w"):  # a plugin just killed may still hold a file
        warden.sweep("test")
        assert not any(folder.is_mount() for folder in folders)
        assert "unmounted 5 data folder(s)" in capfd.readouterr().err
    # Closed: the detached filesystem goes, autoclear frees its loop device (the fixture checks).
    templates.clear()
