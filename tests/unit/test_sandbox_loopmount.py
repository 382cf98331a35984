"""The pure parts of mounting images by system calls: options → flags, the kernel's structs,
a sparse file's data ranges and copy, several unmounts at once. (The mounts themselves:
``tests/integration/test_quota_syscalls.py``.)"""

from __future__ import annotations

import os
import struct
import threading
from pathlib import Path

import pytest

from rosey.sandbox import loopmount, mounts
from rosey.sandbox.quota_image import MOUNT_OPTIONS, data_ranges, sparse_copy

MIB = 1024 * 1024


@pytest.mark.parametrize(
    ("options", "flags", "data"),
    [
        (MOUNT_OPTIONS, loopmount.MS_NOSUID | loopmount.MS_NODEV | loopmount.MS_NOEXEC, "discard"),
        ("loop", 0, ""),
        ("nodev,,errors=remount-ro", loopmount.MS_NODEV, "errors=remount-ro"),
    ],
)
def test_mount_flags(options: str, flags: int, data: str) -> None:
    assert loopmount.mount_flags(options) == (flags, data)


def test_the_loop_structs_have_the_kernels_layout() -> None:
    info = loopmount.info64("/srv/state/quota/dice.img")
    assert len(info) == 232  # sizeof(struct loop_info64)
    assert struct.unpack_from("I", info, 52)[0] == loopmount.LO_FLAGS_AUTOCLEAR  # lo_flags
    assert info[56:81] == b"/srv/state/quota/dice.img"  # lo_file_name
    config = loopmount.loop_config(7, "/x.img")
    assert len(config) == 304  # sizeof(struct loop_config)
    assert struct.unpack_from("II", config) == (7, 0)  # fd, block_size (default)
    assert config[8:240] == loopmount.info64("/x.img")
    assert len(loopmount.info64("/" + "a" * 100)) == 232  # a long name is cut, not overflowing


def test_data_ranges_and_sparse_copy_keep_the_holes(tmp_path: Path) -> None:
    source = tmp_path / "sparse"
    with open(source, "wb") as fh:
        fh.truncate(8 * MIB)
        fh.seek(MIB)
        fh.write(b"a" * 4096)
        fh.seek(5 * MIB)
        fh.write(b"b" * 8192)
    with open(source, "rb") as fh:
        ranges = data_ranges(fh.fileno(), 8 * MIB)
    assert [start for start, _ in ranges] == [MIB, 5 * MIB]
    copy = tmp_path / "copy"
    sparse_copy(source, copy)
    assert copy.read_bytes() == source.read_bytes()
    assert copy.stat().st_blocks * 512 <= source.stat().st_blocks * 512


def test_unmount_all_tries_every_target_at_once_and_reports_failures(tmp_path: Path) -> None:
    folders = [tmp_path / f"f{i}" for i in range(5)]
    for folder in folders:
        folder.mkdir()
    # Not mounts: every unmount fails (EINVAL as root, EPERM otherwise), each is reported.
    failed = mounts.unmount_all([str(f) for f in folders])
    assert sorted(failed) == sorted(str(f) for f in folders)
    # Several run at once: each of three waits until all three have begun.
    barrier = threading.Barrier(3, timeout=5)
    seen: list[str] = []

    def one(target: str) -> None:
        barrier.wait()
        seen.append(target)

    assert mounts.unmount_all(["a", "b", "c"], one, threads=3) == {}
    assert sorted(seen) == ["a", "b", "c"]
    assert mounts.unmount_all([], one) == {}


def test_attached_is_none_for_an_image_nobody_holds(tmp_path: Path) -> None:
    image = tmp_path / "free.img"
    image.write_bytes(b"\0" * 4096)
    assert loopmount.attached(image) is None
    assert loopmount.attached(tmp_path / "missing.img", sys_block=str(tmp_path)) is None
    # Held open (so the lease is refused): the sysfs scan decides.
    fake = tmp_path / "block" / "loop9" / "loop"
    fake.mkdir(parents=True)
    (fake / "backing_file").write_text(f"{image}\n")
    with open(image, "rb+"):
        assert loopmount.attached(image, sys_block=str(tmp_path / "block")) == "/dev/loop9"
    os.unlink(fake / "backing_file")
