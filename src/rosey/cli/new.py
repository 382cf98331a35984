"""``rosey plugin new NAME [--dir DIR]``: write a new plugin folder (``rosey.plugins.scaffold``)."""

from __future__ import annotations

from pathlib import Path

from rosey.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, fail

__all__ = ["new"]


def new(name: str, where: Path) -> int:
    from rosey.plugins.scaffold import name_problem, scaffold_files

    prefix = "rosey plugin new"
    problem = name_problem(name)
    if problem is not None:
        return fail(prefix, problem, EXIT_USAGE)
    folder = where / name
    if folder.exists():
        return fail(prefix, f"{folder} already exists; nothing was written", EXIT_FAILED)
    files = scaffold_files(name)
    try:
        folder.mkdir(parents=True)
        for relative, text in files.items():
            (folder / relative).write_text(text, encoding="utf-8")
    except OSError as exc:
        return fail(prefix, f"cannot write {folder}: {exc.strerror or exc}", EXIT_FAILED)
    print(f"created plugin {name} in {folder}:")
    for relative in files:
        print(f"  {relative}")
    print(f"check it:  rosey plugin validate {folder}")
    print(f"test it:   pytest {folder}")
    return EXIT_OK
