"""Plugin sources: a plugin folder, or a ``.tar.gz`` / ``.zip`` of one, unpacked safely.

An archive someone sent the operator is hostile until checked: every member is checked
before a byte is written (:func:`member_problems`, pure), and the archive is refused whole
when one member is bad, naming each bad member: an absolute path, a ``..`` part, a link
whose target leaves the plugin's folder, a device or fifo, more than :data:`LIMITS` allows
(members, bytes). The folder of a plugin is checked the same way (its symlinks too), so a
folder cannot smuggle a link to ``/etc`` into the plugins folder either.

The archive may hold the plugin's folder (``dice/plugin.yaml``) or its contents
(``plugin.yaml`` at the top); :func:`plugin_root` finds it. File I/O only, no processes.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Literal

from rosey.errors import SourceError, SourceNotFound

# tarfile and zipfile are imported where an archive is read: a running bot that installs
# nothing does not carry them.
if TYPE_CHECKING:
    import tarfile
    import zipfile

__all__ = [
    "LIMITS",
    "Limits",
    "Member",
    "member_problems",
    "plugin_root",
    "source_kind",
    "unpack",
]

MANIFEST_FILE = "plugin.yaml"
#: Folders never copied from a source: caches and version control, rebuilt or not needed.
SKIPPED = frozenset({"__pycache__", ".git", ".hg", ".svn", ".mypy_cache", ".pytest_cache"})
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Limits:
    """How big a source may be: members (files, folders, links) and bytes once unpacked."""

    max_members: int = 5000
    max_bytes: int = 100 * 1024 * 1024


LIMITS = Limits()

Kind = Literal["file", "dir", "symlink", "hardlink", "other"]


@dataclass(frozen=True)
class Member:
    """One entry of a source: its path inside it (``/``-separated), kind, size, link target."""

    name: str
    kind: Kind
    size: int = 0
    link: str = ""


def _path_problem(name: str) -> str | None:
    if not name or name in (".", "./"):
        return None
    if "\x00" in name:
        return "a NUL byte in the name"
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "an absolute path"
    if "\\" in name:
        return "a backslash in the name (Windows path?)"
    if ".." in PurePosixPath(name).parts:
        return "a '..' part leaving the plugin's folder"
    return None


def _link_problem(member: Member) -> str | None:
    if not member.link:
        return "a link without a target"
    if member.link.startswith("/"):
        return f"a link to the absolute path {member.link!r}"
    if member.kind == "hardlink":  # tar: the target is another member's path
        problem = _path_problem(member.link)
        return f"a hard link to {member.link!r}: {problem}" if problem else None
    target = posixpath.normpath(posixpath.join(posixpath.dirname(member.name), member.link))
    if target == ".." or target.startswith("../"):
        return f"a link to {member.link!r}, outside the plugin's folder"
    return None


def member_problems(members: Iterable[Member], limits: Limits = LIMITS) -> list[str]:
    """Every reason not to unpack these members, each naming the member (empty: all fine)."""
    problems: list[str] = []
    count = total = 0
    for member in members:
        count += 1
        total += max(member.size, 0)
        problem = _path_problem(member.name)
        if problem is None and member.kind in ("symlink", "hardlink"):
            problem = _link_problem(member)
        elif problem is None and member.kind == "other":
            problem = "a device, fifo or other special file"
        if problem is not None:
            problems.append(f"{member.name!r}: {problem}")
    if count > limits.max_members:
        problems.append(f"{count} entries, more than the {limits.max_members} allowed")
    if total > limits.max_bytes:
        problems.append(
            f"{total} bytes unpacked, more than the {limits.max_bytes} allowed "
            f"({limits.max_bytes // (1024 * 1024)} MiB)"
        )
    return problems


def source_kind(source: Path) -> Literal["folder", "tar", "zip"]:
    """What ``source`` is, by its content (``SourceError`` when none of the three)."""
    if source.is_dir():
        return "folder"
    if not source.exists():
        raise SourceNotFound(str(source))
    if not source.is_file():
        raise SourceError(str(source), "is neither a folder nor a file")
    name = source.name.lower()
    import tarfile
    import zipfile

    if zipfile.is_zipfile(source):
        return "zip"
    try:
        if tarfile.is_tarfile(source):
            return "tar"
    except OSError as exc:
        raise SourceError(str(source), f"cannot be read: {exc.strerror or exc}") from None
    hint = (
        " (the name says archive, the content does not)" if name.endswith((".gz", ".zip")) else ""
    )
    raise SourceError(
        str(source), "is neither a plugin folder nor a .tar.gz or .zip archive" + hint
    )


def unpack(source: Path, into: Path, limits: Limits = LIMITS) -> Path:
    """Copy or unpack ``source`` into the empty folder ``into``; the plugin's folder in it.

    Nothing is written when a member is refused (``SourceError`` naming each).
    """
    kind = source_kind(source)
    if kind == "folder":
        _copy_folder(source, into, limits)
        return into
    if kind == "tar":
        _unpack_tar(source, into, limits)
    else:
        _unpack_zip(source, into, limits)
    return plugin_root(into, str(source))


def plugin_root(folder: Path, source: str) -> Path:
    """``folder`` when it holds ``plugin.yaml``, else its one subfolder that does."""
    if (folder / MANIFEST_FILE).is_file():
        return folder
    tops = [p for p in folder.iterdir() if p.name not in ("__MACOSX",) and p.name not in SKIPPED]
    dirs = [p for p in tops if p.is_dir() and not p.is_symlink()]
    if len(tops) == 1 and len(dirs) == 1 and (dirs[0] / MANIFEST_FILE).is_file():
        return dirs[0]
    raise SourceError(
        source,
        f"holds no {MANIFEST_FILE} at its top, nor in one single top-level folder "
        f"(found: {', '.join(sorted(p.name for p in tops)[:10]) or 'nothing'})",
    )


# -- folders ------------------------------------------------------------------------------------


def _folder_members(root: Path) -> Iterator[Member]:
    for top, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED)
        base = Path(top)
        for name in [*dirs, *sorted(files)]:
            path = base / name
            relative = path.relative_to(root).as_posix()
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                yield Member(relative, "symlink", 0, os.readlink(path))
            elif stat.S_ISDIR(info.st_mode):
                yield Member(relative, "dir")
            elif stat.S_ISREG(info.st_mode):
                yield Member(relative, "file", info.st_size)
            else:
                yield Member(relative, "other")


def _copy_folder(source: Path, into: Path, limits: Limits) -> None:
    if not (source / MANIFEST_FILE).is_file():
        raise SourceError(str(source), f"is a folder without {MANIFEST_FILE}")
    members = []
    for member in _folder_members(source):
        members.append(member)
        if len(members) > limits.max_members:
            break  # a folder like / would take forever: the count alone refuses it
    problems = member_problems(members, limits)
    if problems:
        raise SourceError(str(source), _listed(problems))
    shutil.copytree(
        source,
        into,
        symlinks=True,
        ignore=shutil.ignore_patterns(*SKIPPED),
        dirs_exist_ok=True,
    )


# -- archives -----------------------------------------------------------------------------------


def _tar_member(info: tarfile.TarInfo) -> Member:
    name = info.name.removeprefix("./") if info.name != "./" else "."
    if info.issym():
        return Member(name, "symlink", 0, info.linkname)
    if info.islnk():
        return Member(name, "hardlink", 0, info.linkname.removeprefix("./"))
    if info.isdir():
        return Member(name, "dir")
    if info.isreg():
        return Member(name, "file", info.size)
    return Member(name, "other")


def _unpack_tar(source: Path, into: Path, limits: Limits) -> None:
    import tarfile

    try:
        with tarfile.open(source, "r:*") as archive:
            infos = []
            for info in archive:
                infos.append(info)
                if len(infos) > limits.max_members:
                    break
            problems = member_problems((_tar_member(i) for i in infos), limits)
            if problems:
                raise SourceError(str(source), _listed(problems))
            # The checks above, then the standard library's own "data" filter as a second
            # layer (it refuses the same things and drops set-uid bits and odd modes).
            archive.extractall(into, members=infos, filter="data")
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise SourceError(str(source), f"is not a readable archive: {exc}") from None


def _zip_member(info: zipfile.ZipInfo, archive: zipfile.ZipFile) -> Member:
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        target = archive.read(info)[:4096].decode("utf-8", "replace")
        return Member(info.filename, "symlink", 0, target)
    if info.is_dir():
        return Member(info.filename.rstrip("/"), "dir")
    if stat.S_IFMT(mode) not in (0, stat.S_IFREG):  # 0: made without Unix modes
        return Member(info.filename, "other")
    return Member(info.filename, "file", info.file_size)


def _unpack_zip(source: Path, into: Path, limits: Limits) -> None:
    import zipfile

    try:
        with zipfile.ZipFile(source) as archive:
            infos = archive.infolist()
            members = [_zip_member(i, archive) for i in infos[: limits.max_members + 1]]
            problems = member_problems(members, limits)
            if not problems and any(m.kind == "symlink" for m in members):
                problems = [
                    f"{m.name!r}: a symbolic link (zip sources may not hold links; use a .tar.gz)"
                    for m in members
                    if m.kind == "symlink"
                ]
            if problems:
                raise SourceError(str(source), _listed(problems))
            budget = limits.max_bytes
            for info, member in zip(infos, members, strict=True):
                target = into / member.name
                if member.kind == "dir":
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as data, target.open("xb") as out:
                    budget = _copy_capped(data, out, budget, str(source))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as exc:
        raise SourceError(str(source), f"is not a readable archive: {exc}") from None


def _copy_capped(data: IO[bytes], out: IO[bytes], budget: int, source: str) -> int:
    """Copy until the end or until ``budget`` bytes are exceeded (sizes in a zip may lie)."""
    while chunk := data.read(_CHUNK):
        budget -= len(chunk)
        if budget < 0:
            raise SourceError(source, "unpacks to more bytes than allowed")
        out.write(chunk)
    return budget


def _listed(problems: list[str], most: int = 10) -> str:
    shown = "; ".join(problems[:most])
    more = f"; and {len(problems) - most} more" if len(problems) > most else ""
    return f"refused: {shown}{more}"
