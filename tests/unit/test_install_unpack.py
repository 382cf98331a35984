"""Plugin sources unpacked on disk, and the plugin store: what is fine, what is refused, and
that nothing is left over (files in a temporary folder only)."""

from __future__ import annotations

import io
import os
import re
import shutil
import tarfile
import zipfile
from pathlib import Path

import pytest

from installkit import hostile_tarball, plugin_folder, tarball, zipped
from rosey.errors import SourceError, SourceNotFound
from rosey.plugins import store as store_module
from rosey.plugins.store import PluginStore, exchange
from rosey.plugins.unpack import Limits, _copy_capped, unpack


@pytest.mark.parametrize("top", ["greeter", None])
def test_archives_may_hold_the_folder_or_its_contents(tmp_path: Path, top: str | None) -> None:
    source = plugin_folder(tmp_path / "src")
    for archive in (
        tarball(source, tmp_path / "p.tar.gz", top=top),
        zipped(source, tmp_path / "p.zip", top=top),
    ):
        into = tmp_path / archive.name.replace(".", "_")
        root = unpack(archive, into)
        assert (root / "plugin.yaml").read_text() == (source / "plugin.yaml").read_text()
        assert root == (into / top if top else into)


def test_a_folder_copy_skips_caches_and_refuses_links_out(tmp_path: Path) -> None:
    source = plugin_folder(tmp_path / "src")
    (source / "__pycache__").mkdir()
    (source / "__pycache__" / "x.pyc").write_bytes(b"x")
    (source / "inside").symlink_to("greeter.py")
    root = unpack(source, tmp_path / "copy")
    assert sorted(p.name for p in root.iterdir()) == ["greeter.py", "inside", "plugin.yaml"]
    (source / "outside").symlink_to("/etc/passwd")
    with pytest.raises(SourceError, match="'outside': a link to the absolute path '/etc/passwd'"):
        unpack(source, tmp_path / "copy2")
    assert not (tmp_path / "copy2").exists()


def test_bounds_refuse_before_writing(tmp_path: Path) -> None:
    source = plugin_folder(tmp_path / "src")
    (source / "big.bin").write_bytes(b"\0" * 5000)
    archive = tarball(source, tmp_path / "p.tar.gz")
    with pytest.raises(SourceError, match="bytes unpacked, more than the 4096 allowed"):
        unpack(archive, tmp_path / "out", Limits(max_bytes=4096))
    assert not (tmp_path / "out").exists()
    with pytest.raises(SourceError, match="entries, more than the 2 allowed"):
        unpack(archive, tmp_path / "out2", Limits(max_members=2))
    assert not (tmp_path / "out2").exists()


def test_a_zip_that_inflates_past_the_bound_is_refused(tmp_path: Path) -> None:
    """A small zip (deflated zeros) whose members unpack to more than allowed."""
    source = plugin_folder(tmp_path / "src")
    archive = zipped(source, tmp_path / "p.zip")
    with zipfile.ZipFile(archive, "a", compression=zipfile.ZIP_DEFLATED) as out:
        out.writestr("bomb.bin", b"\0" * 200_000)
    assert archive.stat().st_size < 10_000
    with pytest.raises(SourceError, match="more than the 100000 allowed"):
        unpack(archive, tmp_path / "out", Limits(max_bytes=100_000))
    assert not (tmp_path / "out").exists()


def test_not_an_archive_and_no_manifest(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not an archive")
    with pytest.raises(SourceError, match=r"neither a plugin folder nor a \.tar\.gz or \.zip"):
        unpack(junk, tmp_path / "out")
    empty = tmp_path / "empty.tar.gz"
    with tarfile.open(empty, "w:gz") as archive:
        info = tarfile.TarInfo("readme.txt")
        archive.addfile(info)
    with pytest.raises(SourceError, match=r"holds no plugin\.yaml"):
        unpack(empty, tmp_path / "out2")


def test_store_stage_leaves_nothing_when_refused(tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    store = PluginStore(plugins, tmp_path / "state")
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"PK\x03\x04 broken")
    with pytest.raises(SourceError):
        store.stage(junk)
    assert list(plugins.iterdir()) == []


def test_store_keeps_versions_in_order(tmp_path: Path) -> None:
    store = PluginStore(tmp_path / "plugins", tmp_path / "state")
    for version in ("1.0.0", "2.0.0", "1.5.0"):
        folder = plugin_folder(tmp_path / version, version=version)
        store.keep("greeter", version, folder)
    assert [k.version for k in store.kept("greeter")] == ["1.5.0", "2.0.0", "1.0.0"]
    store.forget_kept("greeter", "1.5.0")
    assert [k.version for k in store.kept("greeter")] == ["2.0.0", "1.0.0"]
    assert store.purge("greeter") == [str(tmp_path / "state" / "versions" / "greeter")]
    assert store.kept("greeter") == []


@pytest.mark.parametrize(
    ("kind", "problem"),
    [
        ("dotdot", "a '..' part leaving the plugin's folder"),
        ("absolute", "an absolute path"),
        ("symlink", "outside the plugin's folder"),
        ("hardlink", "a link to the absolute path '/etc/shadow'"),
    ],
)
def test_hostile_tarballs_are_refused_whole(tmp_path: Path, kind: str, problem: str) -> None:
    archive = hostile_tarball(plugin_folder(tmp_path / "src"), tmp_path / "h.tar.gz", kind)
    with pytest.raises(SourceError, match=re.escape(problem)):
        unpack(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not any(tmp_path.rglob("escaped.txt"))


def test_links_inside_a_tarball_are_kept_and_zips_hold_none(tmp_path: Path) -> None:
    source = plugin_folder(tmp_path / "src")
    (source / "sub").mkdir()
    (source / "sub" / "alias.py").symlink_to("../greeter.py")
    root = unpack(tarball(source, tmp_path / "p.tar.gz"), tmp_path / "out")
    assert (root / "sub" / "alias.py").read_text() == (source / "greeter.py").read_text()
    with zipfile.ZipFile(tmp_path / "p.zip", "w") as archive:
        archive.write(source / "plugin.yaml", "plugin.yaml")
        archive.writestr("sub/", "")
        info = zipfile.ZipInfo("alias.py")
        info.external_attr = 0o120777 << 16
        archive.writestr(info, "greeter.py")
    with pytest.raises(SourceError, match="zip sources may not hold links"):
        unpack(tmp_path / "p.zip", tmp_path / "out2")
    with zipfile.ZipFile(tmp_path / "fifo.zip", "w") as archive:
        info = zipfile.ZipInfo("fifo")
        info.external_attr = 0o010644 << 16
        archive.writestr(info, "")
    with pytest.raises(SourceError, match="a device, fifo or other special file"):
        unpack(tmp_path / "fifo.zip", tmp_path / "out3")


def test_zip_folders_and_a_truncated_archive(tmp_path: Path) -> None:
    source = plugin_folder(tmp_path / "src")
    archive = zipped(source, tmp_path / "p.zip", top="greeter")
    with zipfile.ZipFile(archive, "a") as out:
        out.writestr("greeter/data/", "")
    root = unpack(archive, tmp_path / "out")
    assert (root / "data").is_dir()
    whole = tarball(source, tmp_path / "p.tar.gz").read_bytes()
    (tmp_path / "cut.tar.gz").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(SourceError, match="is not a readable archive"):
        unpack(tmp_path / "cut.tar.gz", tmp_path / "out2")


def test_folders_special_files_and_sizes(tmp_path: Path) -> None:
    source = plugin_folder(tmp_path / "src")
    (source / "sub").mkdir()
    os.mkfifo(source / "sub" / "pipe")
    with pytest.raises(SourceError, match="'sub/pipe': a device, fifo or other special file"):
        unpack(source, tmp_path / "out")
    bare = tmp_path / "bare"
    bare.mkdir()
    with pytest.raises(SourceError, match=r"is a folder without plugin\.yaml"):
        unpack(bare, tmp_path / "out2")
    many = plugin_folder(tmp_path / "many")
    for i in range(5):
        (many / f"f{i}").write_text("x")
    with pytest.raises(SourceError, match="more than the 3 allowed"):
        unpack(many, tmp_path / "out3", Limits(max_members=3))
    with pytest.raises(SourceNotFound):
        unpack(tmp_path / "missing.zip", tmp_path / "out4")
    with pytest.raises(SourceError, match="neither a folder nor a file"):
        unpack(Path("/dev/null"), tmp_path / "out5")


def test_copying_stops_at_the_budget() -> None:
    """Defence in depth: sizes come from the archive, the copy counts the bytes itself."""
    out = io.BytesIO()
    with pytest.raises(SourceError, match="unpacks to more bytes than allowed"):
        _copy_capped(io.BytesIO(b"x" * 200_000), out, 100_000, "p.zip")
    assert len(out.getvalue()) <= 100_000
    assert _copy_capped(io.BytesIO(b"abc"), io.BytesIO(), 10, "p.zip") == 7


def test_store_place_swap_unswap_keep(tmp_path: Path) -> None:
    plugins, state = tmp_path / "plugins", tmp_path / "state"
    store = PluginStore(plugins, state)
    staged = store.stage(plugin_folder(tmp_path / "v1"))
    target = store.place(staged, "greeter")
    assert target == plugins / "greeter"
    assert (target / "plugin.yaml").stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in plugins.iterdir()) == ["greeter"]  # no staging left
    again = store.stage(plugin_folder(tmp_path / "again"))
    with pytest.raises(FileExistsError):
        store.place(again, "greeter")  # never over an existing folder
    store.discard(again)

    new = store.stage(tarball(plugin_folder(tmp_path / "v2", version="2.0.0"), tmp_path / "2.tgz"))
    old_at = store.swap_in(new, target)
    assert "2.0.0" in (target / "plugin.yaml").read_text()
    assert "1.0.0" in (old_at / "plugin.yaml").read_text()
    store.unswap(new, target)  # a reload failed: the old one is back, the new one gone
    assert "1.0.0" in (target / "plugin.yaml").read_text()
    assert not new.scratch.exists()

    new = store.stage(plugin_folder(tmp_path / "v3", version="3.0.0"), beside=target)
    kept = store.keep("greeter", "1.0.0", store.swap_in(new, target), new)
    assert kept == state / "versions" / "greeter" / "1.0.0"
    assert [k.version for k in store.kept("greeter")] == ["1.0.0"]
    back = store.stage_kept(store.kept("greeter")[0], target)
    assert "1.0.0" in (back.root / "plugin.yaml").read_text()
    store.discard(back)
    assert sorted(p.name for p in plugins.iterdir()) == ["greeter"]


def test_exchange_without_renameat2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``renameat2`` swaps in one step; where libc lacks it, two renames in a row do."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "x").write_text("a")
    (b / "x").write_text("b")
    exchange(a, b)
    assert ((a / "x").read_text(), (b / "x").read_text()) == ("b", "a")
    with pytest.raises(FileNotFoundError):
        exchange(a, tmp_path / "missing")
    monkeypatch.setattr(store_module, "_renameat2", lambda: None)
    exchange(a, b)
    assert ((a / "x").read_text(), (b / "x").read_text()) == ("a", "b")


def test_purge_and_a_lost_history(tmp_path: Path) -> None:
    state = tmp_path / "state"
    store = PluginStore(tmp_path / "plugins", state)
    data = state / "data" / "greeter"
    (data / "deep").mkdir(parents=True)
    (data / "deep" / "f").write_text("x")
    (data / "g").write_text("x")
    (state / "quota").mkdir()
    (state / "quota" / "greeter.img").write_bytes(b"")
    store.keep("greeter", "1.0.0", plugin_folder(tmp_path / "v1"))
    (state / "versions" / "greeter" / "history.json").write_text("not json")
    assert [k.version for k in store.kept("greeter")] == ["1.0.0"]  # by name, history lost
    assert store.purge("greeter") == [
        str(data),
        str(state / "quota" / "greeter.img"),
        str(state / "versions" / "greeter"),
    ]
    assert not data.exists()
    assert store.purge("greeter") == []


def test_odd_members_and_damaged_archives(tmp_path: Path) -> None:
    with tarfile.open(tmp_path / "fifo.tar.gz", "w:gz") as archive:
        info = tarfile.TarInfo("plugin.yaml")
        archive.addfile(info, io.BytesIO(b""))
        info = tarfile.TarInfo("pipe")
        info.type = tarfile.FIFOTYPE
        archive.addfile(info)
    with pytest.raises(SourceError, match="'pipe': a device, fifo or other special file"):
        unpack(tmp_path / "fifo.tar.gz", tmp_path / "out")
    with zipfile.ZipFile(tmp_path / "bad.zip", "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("plugin.yaml", "name: x\n" * 20)
    data = bytearray((tmp_path / "bad.zip").read_bytes())
    data[data.index(b"name: x") + 3] ^= 0xFF  # the stored bytes no longer match their CRC
    (tmp_path / "bad.zip").write_bytes(bytes(data))
    with pytest.raises(SourceError, match="is not a readable archive"):
        unpack(tmp_path / "bad.zip", tmp_path / "out2")


def test_store_edges(tmp_path: Path) -> None:
    state = tmp_path / "state"
    store = PluginStore(tmp_path / "plugins", state)
    store.keep("greeter", "1.0.0", plugin_folder(tmp_path / "a"))
    store.keep("greeter", "1.0.0", plugin_folder(tmp_path / "b", extra="# again\n"))
    assert "# again" in (state / "versions" / "greeter" / "1.0.0" / "plugin.yaml").read_text()
    store.keep("greeter", "2.0.0", plugin_folder(tmp_path / "c", version="2.0.0"))
    kept = store.kept("greeter")
    assert [k.version for k in kept] == ["2.0.0", "1.0.0"]
    shutil.rmtree(kept[0].folder)  # deleted by hand: skipped, not an error
    assert [k.version for k in store.kept("greeter")] == ["1.0.0"]
    with pytest.raises(FileNotFoundError):
        store.stage_kept(kept[0], tmp_path / "plugins" / "greeter")
    assert list((tmp_path / "plugins").iterdir()) == []
    source = plugin_folder(tmp_path / "linked")
    (source / "alias.py").symlink_to("greeter.py")
    staged = store.stage(source)
    assert (staged.root / "alias.py").is_symlink()
    store.discard(staged)
