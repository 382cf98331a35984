"""Discovery's edges and what ``rosey plugin validate`` checks beyond loading (authoring problems),
and reading a plugin's handlers from its source (``rosey.plugins.declared``): plain tables."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from rosey.plugins.declared import command_docs, module_file, read_commands
from rosey.plugins.discovery import authoring_problems, check_entrypoint, discover, manifest_files
from rosey.protocol.manifest import Manifest


def plugin(root: Path, folder: str, manifest: str, files: dict[str, str] | None = None) -> Path:
    path = root / folder
    path.mkdir(parents=True)
    (path / "plugin.yaml").write_text(manifest)
    for name, text in (files or {}).items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    return path


def head(name: str, entrypoint: str = "m:P") -> str:
    return f"name: {name}\nversion: 1.0.0\nentrypoint: {entrypoint}\n"


# -- manifest_files ------------------------------------------------------------------------------


def test_manifest_files_takes_files_plugin_folders_and_plugins_folders_each_once(
    tmp_path: Path,
) -> None:
    a = plugin(tmp_path / "all", "a", head("a"))
    b = plugin(tmp_path / "all", "b", head("b"))
    (tmp_path / "all" / "not_a_plugin").mkdir()
    found = manifest_files(
        [
            a / "plugin.yaml",  # a file
            a,  # the same plugin as a folder: not twice
            tmp_path / "all",  # the plugins folder: a (again) and b
            tmp_path / "missing",  # nothing there: nothing found, no error
        ]
    )
    assert found == [a / "plugin.yaml", b / "plugin.yaml"]
    assert manifest_files([tmp_path / "missing"]) == []


# -- check_entrypoint ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "problem"),
    [
        ("class P(:\n", "module m.py does not parse: "),
        ("x = 1\0\n", "module m.py does not parse: "),
        ("class Q: ...\nclass R: ...\n", "module m.py defines no class 'P' (it defines: Q, R)"),
        ("x = 1\n", "module m.py defines no class 'P'"),
    ],
)
def test_an_entrypoint_module_that_does_not_parse_or_lacks_the_class(
    tmp_path: Path, code: str, problem: str
) -> None:
    (tmp_path / "m.py").write_bytes(code.encode())
    manifest = Manifest.model_validate({"name": "p", "version": "1.0.0", "entrypoint": "m:P"})
    error = check_entrypoint(manifest, tmp_path, "p/plugin.yaml")
    assert error is not None
    assert (error.file, error.field) == ("p/plugin.yaml", "entrypoint")
    assert error.problem.startswith(problem)
    if problem.endswith("'P'"):
        assert error.problem == problem


@pytest.mark.parametrize("code", ["class P: ...\n", "P = make_class()\n"])
def test_an_entrypoint_class_may_be_defined_or_assigned(tmp_path: Path, code: str) -> None:
    (tmp_path / "m.py").write_text(code)
    manifest = Manifest.model_validate({"name": "p", "version": "1.0.0", "entrypoint": "m:P"})
    assert check_entrypoint(manifest, tmp_path, "f") is None


# -- discover ------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["- a\n- b\n", "name: 5\nversion: 1.0.0\n", ""])
def test_a_manifest_declaring_no_name_takes_no_name(tmp_path: Path, text: str) -> None:
    """Only ``name: <text>`` declares a name: a list, a number or an empty file claims none, so
    it cannot make a genuine plugin a duplicate."""
    plugin(tmp_path, "a_odd", text)
    plugin(tmp_path, "b_real", head("a"), {"m.py": "class P: ...\n"})
    found = discover([tmp_path])
    assert sorted(found.plugins) == ["a"]
    assert found.duplicates == {}
    assert {p.file for p in found.problems} == {str(tmp_path / "a_odd" / "plugin.yaml")}


def test_a_connector_folder_is_checked_but_not_loaded_as_a_plugin(tmp_path: Path) -> None:
    plugin(tmp_path, "chat", head("chat") + "kind: connector\n", {"m.py": "class P: ...\n"})
    plugin(tmp_path, "bad", head("bad") + "kind: connector\n")  # no module
    found = discover([tmp_path])
    assert found.plugins == {}
    assert [(p.file, p.field) for p in found.problems] == [
        (str(tmp_path / "bad" / "plugin.yaml"), "entrypoint")
    ]


# -- authoring_problems --------------------------------------------------------------------------

HANDLERS = """\
from rosey.sdk import Plugin, command

class P(Plugin):
    @command("roll")
    async def roll(self, ctx): ...

    @command("secret")
    async def secret(self, ctx): ...
"""


def test_commands_without_handlers_and_handlers_not_listed(tmp_path: Path) -> None:
    folder = plugin(
        tmp_path,
        "dice",
        head("dice") + "commands:\n  - roll\n  - flip\n",
        {"m.py": HANDLERS},
    )
    source = str(folder / "plugin.yaml")
    found = authoring_problems(discover([folder]))
    assert [(p.file, p.line, p.field) for p in found] == [
        (source, 6, "commands.1"),
        (source, 4, "commands"),
    ]
    assert found[0].problem == (
        '!flip has no handler: m:P has no method decorated @command("flip") '
        "(add one, or remove it here)"
    )
    assert found[1].problem == (
        "P.secret handles !secret, which is not listed here: the bot never sends it (add 'secret')"
    )


def test_a_base_class_from_elsewhere_claims_no_missing_handler(tmp_path: Path) -> None:
    """Its handlers cannot be read, so a listed command may well be handled there; a handler
    read here that is not listed is still said."""
    code = (
        "from elsewhere import Base\n\nclass P(Base):\n    @command('own')\n    def own(s): ...\n"
    )
    folder = plugin(tmp_path, "x", head("x") + "commands: [inherited]\n", {"m.py": code})
    found = authoring_problems(discover([folder]))
    assert [(p.field, p.problem.split(",")[0]) for p in found] == [
        ("commands", "P.own handles !own")
    ]


def test_a_class_the_source_reader_cannot_find_claims_nothing(tmp_path: Path) -> None:
    """``P = make()`` passes discovery (the name exists) but has no class body to read."""
    folder = plugin(tmp_path, "x", head("x") + "commands: [a]\n", {"m.py": "P = make()\n"})
    assert authoring_problems(discover([folder])) == []


def test_dependencies_must_be_among_the_plugins_found(tmp_path: Path) -> None:
    ok = {"m.py": "class P: ...\n"}
    plugin(tmp_path, "base", head("base"), ok)
    plugin(tmp_path, "dup_1", head("twin"), ok)
    plugin(tmp_path, "dup_2", head("twin"), ok)
    user = plugin(
        tmp_path,
        "user",
        head("user") + "dependencies:\n  - base\n  - twin\n  - ghost\n",
        ok,
    )
    found = authoring_problems(discover([tmp_path]))
    # base is there; twin is declared twice (its own problem says so); ghost is nowhere.
    assert [(p.file, p.line, p.field) for p in found] == [
        (str(user / "plugin.yaml"), 7, "dependencies.2")
    ]
    assert found[0].problem == (
        "no plugin 'ghost' among those found (base, user): plugin 'user' would never start "
        "(validate its folder too, or remove it here)"
    )


def test_a_lone_plugin_missing_its_dependency_says_none_were_found_but_itself(
    tmp_path: Path,
) -> None:
    folder = plugin(
        tmp_path, "solo", head("solo") + "dependencies: [ghost]\n", {"m.py": "class P: ...\n"}
    )
    (problem,) = authoring_problems(discover([folder]))
    assert "among those found (solo)" in problem.problem


def test_a_manifest_changed_after_discovery_is_reported_without_lines(tmp_path: Path) -> None:
    """Validate reads each manifest again for its lines; one that became unreadable meanwhile
    still gets its problems, only without a line."""
    folder = plugin(
        tmp_path, "x", head("x") + "dependencies: [ghost]\n", {"m.py": "class P: ...\n"}
    )
    found = discover([folder])
    (folder / "plugin.yaml").write_text("name: [\n")
    (problem,) = authoring_problems(found)
    assert (problem.field, problem.line) == ("dependencies.0", None)


def test_nothing_found_nothing_to_say() -> None:
    assert authoring_problems(discover([])) == []


# -- rosey.plugins.declared ----------------------------------------------------------------------


def test_module_file_finds_a_module_or_a_package(tmp_path: Path) -> None:
    (tmp_path / "one.py").write_text("")
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    (tmp_path / "pkg" / "sub" / "__init__.py").write_text("")
    assert module_file("one", tmp_path) == tmp_path / "one.py"
    assert module_file("pkg.sub", tmp_path) == tmp_path / "pkg" / "sub" / "__init__.py"
    assert module_file("pkg", tmp_path) is None  # a folder without __init__.py
    assert module_file("gone", tmp_path) is None


BASES = """\
import sdk

class Root(sdk.Plugin):
    @command("a")
    def a(self): ...

class Left(Root):
    @command("b")
    def b(self): ...

class Right(Root):
    @command("a", help="Right's a.")
    def a(self): ...

class Both(Left, Right): ...

class Made(factory()):
    @command("m")
    def m(self): ...

class Odd:
    @command()
    def nothing(self): ...

    @command(WORD)
    def named(self): ...

    @other("x")
    def other(self): ...

    @command
    def bare(self): ...

    @command("ok", help=HELP)
    async def ok(self):
        '''From the docstring.'''
"""


@pytest.mark.parametrize(
    ("class_name", "handlers", "complete"),
    [
        # Root once although both bases derive from it; Right's "a" wins over Root's.
        ("Both", {"a": ("a", "Right's a."), "b": ("b", "")}, True),
        ("Root", {"a": ("a", "")}, True),  # sdk.Plugin: an attribute naming the SDK's base
        ("Made", {"m": ("m", "")}, False),  # a base that is an expression: cannot be read
        # Only literal command words count; a non-literal help falls back to the docstring.
        ("Odd", {"ok": ("ok", "From the docstring.")}, True),
    ],
)
def test_read_commands_follows_bases_in_the_module(
    class_name: str, handlers: dict[str, tuple[str, str]], complete: bool
) -> None:
    found = read_commands(ast.parse(BASES), class_name)
    assert found.found
    assert found.complete is complete
    assert {c: (d.method, d.help) for c, d in found.handlers.items()} == handlers


def test_command_docs_of_a_missing_or_broken_module(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("class P(:\n")
    for entrypoint in ("gone:P", "broken:P"):
        found = command_docs(entrypoint, tmp_path)
        assert (found.found, found.complete, found.handlers) == (False, False, {})


def test_command_docs_reads_the_file_again_when_it_changes(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("class P:\n    @command('one')\n    def one(self): ...\n")
    assert set(command_docs("m:P", tmp_path).handlers) == {"one"}
    module.write_text("class P:\n    @command('two')\n    def two(self): ...\n    # longer\n")
    assert set(command_docs("m:P", tmp_path).handlers) == {"two"}
