"""Plugin sources for the install tests: real plugin folders, tarballs and zips (good and bad)."""

from __future__ import annotations

import io
import json
import tarfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

CODE = '''\
"""A greeter that says its version and keeps a note in its data folder."""

from pathlib import Path

from rosey.sdk import CommandContext, Plugin, command

VERSION = "{version}"


class Greeter(Plugin):
    @command("{command}")
    async def greet(self, ctx: CommandContext) -> str:
        """Say the version and the note, or keep one: !{command} [note TEXT]."""
        note = Path(self.data_dir) / "note.txt"
        if ctx.args and ctx.args[0] == "note":
            note.write_text(" ".join(ctx.args[1:]))
            return "noted"
        kept = note.read_text() if note.exists() else "none"
        return f"{{self.name}} {{VERSION}} (note: {{kept}})"
'''


def plugin_folder(
    where: Path,
    *,
    name: str = "greeter",
    version: str = "1.0.0",
    grants: Sequence[str] = (),
    command: str | None = None,
    extra: str = "",
) -> Path:
    """A plugin folder ``where`` (created) whose command replies ``NAME VERSION (note: ...)``."""
    where.mkdir(parents=True)
    command = command or name
    (where / "plugin.yaml").write_text(
        f"name: {name}\nversion: {version}\nentrypoint: greeter:Greeter\n"
        f"commands: [{command}]\npermissions: {json.dumps(list(grants))}\n{extra}"
    )
    (where / "greeter.py").write_text(CODE.format(version=version, command=command))
    return where


def tarball(folder: Path, out: Path, *, top: str | None = "greeter") -> Path:
    """``out`` (.tar.gz) holding ``folder`` as ``top/`` (None: its contents at the top)."""
    with tarfile.open(out, "w:gz") as archive:
        archive.add(folder, arcname=top or ".")
    return out


def zipped(folder: Path, out: Path, *, top: str | None = None) -> Path:
    with zipfile.ZipFile(out, "w") as archive:
        for path in sorted(folder.rglob("*")):
            relative = path.relative_to(folder).as_posix()
            archive.write(path, f"{top}/{relative}" if top else relative)
    return out


def hostile_tarball(folder: Path, out: Path, kind: str) -> Path:
    """A tarball of a good plugin plus one hostile member: ``dotdot``, ``absolute``,
    ``symlink`` (a link out of the folder) or ``hardlink`` (to an absolute path)."""
    with tarfile.open(out, "w:gz") as archive:
        archive.add(folder, arcname="greeter")
        data = b"owned\n"
        if kind == "dotdot":
            info = tarfile.TarInfo("greeter/../../../../escaped.txt")  # to the plugins folder
        elif kind == "absolute":
            info = tarfile.TarInfo(str(out.parent / "absolute.txt"))
        elif kind == "symlink":
            info = tarfile.TarInfo("greeter/passwd")
            info.type, info.linkname, data = tarfile.SYMTYPE, "../../../../etc/passwd", b""
        elif kind == "hardlink":
            info = tarfile.TarInfo("greeter/shadow")
            info.type, info.linkname, data = tarfile.LNKTYPE, "/etc/shadow", b""
        else:
            raise ValueError(kind)
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data) if data else None)
    return out


def zip_with_symlink(folder: Path, out: Path) -> Path:
    zipped(folder, out)
    with zipfile.ZipFile(out, "a") as archive:
        info = zipfile.ZipInfo("passwd")
        info.external_attr = (0o120777 << 16) | 0
        archive.writestr(info, "/etc/passwd")
    return out
