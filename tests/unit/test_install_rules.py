"""The pure rules of install and update: grants in words, version rules, names, claims, graph."""

from __future__ import annotations

import pytest

from rosey.plugins.grant_words import (
    describe_grant,
    grant_change,
    install_text,
    update_text,
)
from rosey.plugins.install_rules import (
    claim_problems,
    dependency_problems,
    name_problems,
    rosey_version_problem,
    version_problem,
)
from rosey.plugins.scaffold import class_name, module_name, name_problem, scaffold_files


@pytest.mark.parametrize(
    ("grant", "words"),
    [
        ("events.message", "read every chat message on every connected platform"),
        ("events.all", "users joining and leaving"),
        ("chat.send", "post messages to chat on its own"),
        ("storage", "key-value store of its own"),
        ("network", "open network connections to other hosts"),
        ("plugins.call:dice", "run the commands of plugin 'dice'"),
        ("plugins.events:quote", "receive the events plugin 'quote' publishes"),
        ("teleport", "an unknown grant"),
    ],
)
def test_every_grant_has_words(grant: str, words: str) -> None:
    text = describe_grant(grant)
    assert text.startswith(f"{grant}: ")
    assert words in text


@pytest.mark.parametrize(
    ("old", "new", "summary"),
    [
        ([], [], "no change"),
        (["storage"], ["storage"], "no change"),
        (["storage"], ["network", "chat.send"], "new: network, chat.send; removed: storage"),
        ([], ["network"], "new: network"),
        (["network", "storage"], ["storage"], "removed: network"),
        (["a", "b"], ["b", "a"], "no change"),
    ],
)
def test_grant_change_summary(old: list[str], new: list[str], summary: str) -> None:
    assert grant_change(old, new).summary() == summary


def test_install_text_lists_each_grant_or_says_nothing_more() -> None:
    text = install_text("dice", "1.0.0", ["network"])
    assert text.splitlines() == [
        "plugin dice 1.0.0 may answer its own commands, publish its own events and keep files "
        "in its own data folder.",
        "It also asks to:",
        "  - network: open network connections to other hosts (the internet, your LAN)",
    ]
    assert install_text("dice", "1.0.0", []).endswith("It asks for nothing more.")


def test_update_text_shows_only_the_change() -> None:
    text = update_text("dice", "1.0.0", "2.0.0", grant_change(["storage"], ["chat.send"]))
    assert (
        text.splitlines()[0]
        == "update plugin dice 1.0.0 → 2.0.0: grants new: chat.send; removed: storage"
    )
    assert "It newly asks to:" in text
    assert "It no longer asks to:" in text
    added = update_text("dice", "1.0.0", "2.0.0", grant_change([], ["network"]))
    assert "It no longer asks to:" not in added
    removed = update_text("dice", "1.0.0", "2.0.0", grant_change(["network"], []))
    assert removed.splitlines()[1:] == [
        "It no longer asks to:",
        "  - network: open network connections to other hosts (the internet, your LAN)",
    ]
    same = update_text("dice", "1.0.0", "1.1.0", grant_change(["storage"], ["storage"]))
    assert same == "update plugin dice 1.0.0 → 1.1.0: its grants do not change."


@pytest.mark.parametrize(
    ("old", "new", "force", "problem"),
    [
        ("1.0.0", "1.0.1", False, None),
        ("1.0.0", "2.0.0", False, None),
        ("1.9.0", "1.10.0", False, None),  # numbers, not strings
        ("1.0.0-rc.1", "1.0.0", False, None),  # a release is newer than its candidate
        ("1.0.0", "1.0.0-rc.1", False, "older than"),
        ("1.0.0", "1.0.0", False, "the same as"),
        ("1.0.0", "0.9.0", False, "older than"),
        ("1.0.0", "1.0.0", True, None),
        ("1.0.0", "0.9.0", True, None),
        ("1.0.0-weird.x", "1.0.1-weird.y", False, None),  # not PEP 440: the numeric core
        ("1.0.1-weird.x", "1.0.0-weird.y", False, "older than"),
    ],
)
def test_version_must_increase_unless_forced(
    old: str, new: str, force: bool, problem: str | None
) -> None:
    found = version_problem(old, new, force=force)
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert problem in found
        assert "--force" in found


@pytest.mark.parametrize(
    ("requires", "version", "ok"),
    [
        (None, "0.1.0", True),
        (">=0.1", "0.1.0", True),
        (">=0.1,<1", "0.9.9", True),
        (">=0.2", "0.1.0", False),
        ("<0.1", "0.1.0", False),
        ("==0.1.*", "0.1.5", True),
        (">=0.1", "0.2.0rc1", True),  # a pre-release of Rosey counts
    ],
)
def test_requires_rosey(requires: str | None, version: str, ok: bool) -> None:
    problem = rosey_version_problem(requires, version)
    assert (problem is None) is ok
    if not ok:
        assert problem == f"it needs Rosey {requires} (requires_rosey), this is Rosey {version}"


def test_a_requires_rosey_that_is_not_a_range() -> None:
    assert rosey_version_problem(">=x", "0.1.0") == (
        "requires_rosey '>=x' is not a PEP 440 version range"
    )


def test_names_on_install_and_update() -> None:
    installed = {"dice": "/p/dice"}
    assert name_problems("quote", installed=installed, target_exists=False, updating=None) == []
    assert name_problems("dice", installed=installed, target_exists=True, updating=None) == [
        "a plugin named 'dice' is already installed (/p/dice): use 'rosey plugin update dice "
        "SOURCE'"
    ]
    assert name_problems("stray", installed=installed, target_exists=True, updating=None) == [
        "the plugins folder already has a folder named 'stray'"
    ]
    assert name_problems("dice", installed=installed, target_exists=True, updating="dice") == []
    assert name_problems("quote", installed={}, target_exists=False, updating="dice") == [
        "the source holds plugin 'quote', not 'dice'"
    ]


def test_command_claims_of_other_plugins() -> None:
    claims = {"dice": ["roll", "flip"], "quote": ["quote"]}
    assert claim_problems("new", ["hello"], claims) == []
    assert claim_problems("new", ["roll", "quote"], claims) == [
        "!roll is already claimed by plugin 'dice'",
        "!quote is already claimed by plugin 'quote'",
    ]
    assert claim_problems("dice", ["roll"], claims) == []  # its own, on update


@pytest.mark.parametrize(
    ("deps", "graph", "problems"),
    [
        ([], {"a": []}, []),
        (["a"], {"a": []}, []),
        (["zz"], {"a": []}, ["it depends on 'zz', which is not installed"]),
        (["a"], {"a": ["new"]}, ["it would close a dependency cycle: new → a → new"]),
        (["new"], {}, ["it would close a dependency cycle: new → new"]),
    ],
)
def test_dependency_graph_with_the_new_manifest(
    deps: list[str], graph: dict[str, list[str]], problems: list[str]
) -> None:
    assert dependency_problems("new", deps, graph) == problems


@pytest.mark.parametrize(
    ("name", "problem"),
    [("hello", False), ("my_plugin2", False), ("Hello", True), ("9x", True), ("a-b", True)],
)
def test_scaffold_names(name: str, problem: bool) -> None:
    assert (name_problem(name) is not None) is problem


def test_scaffold_files() -> None:
    assert class_name("my_greeter") == "MyGreeterPlugin"
    assert module_name("hello") == "hello"
    assert module_name("json") == "json_plugin"  # never shadow the standard library
    files = scaffold_files("json")
    assert sorted(files) == ["json_plugin.py", "plugin.yaml", "pytest.ini", "test_json.py"]
    assert "entrypoint: json_plugin:JsonPlugin" in files["plugin.yaml"]
    assert '"""Say hello, or echo TEXT back: !json [TEXT]."""' in files["json_plugin.py"]
