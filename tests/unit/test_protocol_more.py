"""The contracts' remaining edges: the manifest loader, the problem wording, the wire codec,
subjects and admin entries (plain tables)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import pytest
from pydantic import BaseModel, Field, ValidationError

from rosey.config_schema import BotConfig
from rosey.errors import DecodeError, ManifestError
from rosey.protocol import subjects, wire
from rosey.protocol.admins import parse_admin
from rosey.protocol.manifest import (
    Manifest,
    describe_validation_error,
    load_manifest,
    load_yaml,
    parse_manifest,
)
from rosey.protocol.problems import (
    YamlFileError,
    allowed_keys,
    describe,
    field_info,
    load_yaml_lines,
    yaml_lines,
)

GOOD = {"name": "dice", "version": "1.0.0", "entrypoint": "dice:DicePlugin"}

# -- rosey.protocol.manifest ---------------------------------------------------------------------


@pytest.mark.parametrize("given", [">=0.1,<1", "==0.1.0", None])
def test_requires_rosey_keeps_a_version_range(given: str | None) -> None:
    assert Manifest.model_validate({**GOOD, "requires_rosey": given}).requires_rosey == given


def test_requires_rosey_refuses_what_is_not_a_range() -> None:
    with pytest.raises(ManifestError) as info:
        parse_manifest({**GOOD, "requires_rosey": "soon"}, "p.yaml")
    assert str(info.value) == (
        "p.yaml: requires_rosey: 'soon' is not a version range; expected a PEP 440 specifier "
        "such as '>=0.1,<1'"
    )


def test_parse_manifest_raises_the_first_problem_and_returns_the_model() -> None:
    with pytest.raises(ManifestError) as info:
        parse_manifest({"version": "x"}, "p.yaml")
    assert info.value.field in {"name", "version", "entrypoint"}
    assert parse_manifest(GOOD, "p.yaml").class_name == "DicePlugin"
    with pytest.raises(ManifestError, match="must be a YAML mapping"):
        parse_manifest(["a"], "p.yaml")


def test_describe_validation_error_gives_field_and_words() -> None:
    with pytest.raises(ValidationError) as info:
        Manifest.model_validate({**GOOD, "limits": {"memory_mb": 8}, "kind": "bot"})
    assert describe_validation_error(info.value) == [
        ("kind", "'bot' is not allowed; expected 'plugin' or 'connector'"),
        ("limits.memory_mb", "8 is not allowed; expected a whole number from 16 to 1048576"),
    ]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "cannot be read: No such file or directory"),
        ("name: [\n", "is not valid YAML at line 2, column 1: expected the node content"),
        ("a: b: c\n", "is not valid YAML at line 1, column 5: mapping values are not allowed"),
    ],
)
def test_load_yaml_says_why_a_file_is_unusable(
    tmp_path: Path, content: str | None, problem: str
) -> None:
    path = tmp_path / "plugin.yaml"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ManifestError) as info:
        load_yaml(path)
    assert (info.value.file, info.value.field) == (str(path), "")
    assert info.value.problem.startswith(problem)


def test_load_manifest_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "plugin.yaml"
    path.write_text("name: dice\nversion: 1.0.0\nentrypoint: dice:DicePlugin\n")
    assert load_manifest(path).name == "dice"


# -- rosey.protocol.problems ---------------------------------------------------------------------


def test_load_yaml_lines_says_why_a_file_is_unusable(tmp_path: Path) -> None:
    with pytest.raises(YamlFileError, match=r"^cannot be read: No such file or directory$"):
        load_yaml_lines(tmp_path / "gone.yaml")
    with pytest.raises(YamlFileError, match=r"^cannot be read: Is a directory$"):
        load_yaml_lines(tmp_path)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(YamlFileError, match=r"^is not UTF-8 text \(byte 9\)$"):
        load_yaml_lines(latin)


@pytest.mark.parametrize("text", ["", "# only a comment\n"])
def test_an_empty_document_is_none_with_no_lines(text: str) -> None:
    assert yaml_lines(text) == (None, {})


def test_a_scalar_document_has_no_lines() -> None:
    assert yaml_lines("5\n") == (5, {})


def test_lines_stop_at_a_depth_no_config_reaches() -> None:
    """Aliases can make a tree as deep as one likes: the walk stops at 64 levels."""
    depth = 80
    data, lines = yaml_lines("[" * depth + "]" * depth)
    deepest = max(len(path) for path in lines)
    assert deepest == 65
    inner = data
    for _ in range(depth - 1):
        inner = inner[0]
    assert inner == []


class Tags(BaseModel):
    tags: Annotated[list[str], Field(min_length=1, max_length=2)]
    share: Annotated[float, Field(ge=0, lt=1)] = 0.5
    below: Annotated[int, Field(lt=10)] = 0
    items: dict[str, Tags] = {}


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        ({"tags": []}, "tags", "has 0 item(s) or characters; allowed: at least 1"),
        ({"tags": ["a", "b", "c"]}, "tags", "has 3 item(s) or characters; allowed: at most 2"),
        (
            {"tags": ["a"], "share": 1},
            "share",
            "1 is not allowed; expected a number at least 0 and below 1",
        ),
        (
            {"tags": ["a"], "below": 10},
            "below",
            "10 is not allowed; expected a whole number below 10",
        ),
        (
            {"tags": ["a"], "items": {"k": 5}},
            "items.k",
            "5 is not allowed; expected a mapping of keys to values",
        ),
        (
            {"tags": ["a"], "items": {"k": {"tags": "x"}}},
            "items.k.tags",
            "'x' is not allowed; expected a list, e.g. [a, b]",
        ),
    ],
)
def test_lengths_and_exclusive_bounds_in_words(
    data: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(ValidationError) as info:
        Tags.model_validate(data)
    assert [(p.field, p.problem) for p in describe(info.value, Tags)] == [(field, words)]


def test_a_mapping_of_models_in_the_bot_config() -> None:
    """``plugins.<name>`` is a dict of models: the field at a name is the model itself (no
    declared bounds), and an unknown key inside lists that model's keys."""
    assert field_info(BotConfig, ("plugins", "dice")) is None
    assert allowed_keys(BotConfig, ("plugins", "dice", "colour")).startswith("enabled, ")
    with pytest.raises(ValidationError) as info:
        BotConfig.model_validate({"plugins": {"dice": 3}, "error_rate": {"threshold": 1}})
    assert [(p.field, p.problem) for p in describe(info.value, BotConfig)] == [
        ("error_rate.threshold", "1 is not allowed; expected a number at least 0 and below 1"),
        ("plugins.dice", "3 is not allowed; expected a mapping of keys to values"),
    ]


def test_an_error_without_words_of_ours_keeps_pydantics_message() -> None:
    class Exact(BaseModel):
        when: Annotated[int, Field(multiple_of=5)]

    with pytest.raises(ValidationError) as info:
        Exact.model_validate({"when": 7})
    (problem,) = describe(info.value, Exact)
    assert problem.problem == "Input should be a multiple of 5 (got 7)"


# -- rosey.protocol.wire -------------------------------------------------------------------------

CHAT = {
    "id": 7,
    "platform": "cytube",
    "channel": "c",
    "user": {"username": "ann", "rank": 2},
    "text": "hi",
    "timestamp": 5,
}


@pytest.mark.parametrize(
    ("extra", "user", "private"),
    [
        ({}, {"username": "ann", "rank": 2}, False),
        (
            {"user": {"username": "ann", "guest": True}},
            {"username": "ann", "rank": 0, "guest": True},
            False,
        ),
        ({"user": {"username": "ann", "guest": False}}, {"username": "ann", "rank": 0}, False),
        ({"private": True}, {"username": "ann", "rank": 2}, True),
        ({"private": "yes"}, {"username": "ann", "rank": 2}, False),
    ],
)
def test_chat_message_keeps_guest_and_private_only_when_true(
    extra: dict[str, Any], user: dict[str, Any], private: bool
) -> None:
    message = wire.chat_message("s", {**CHAT, **extra})
    assert message["user"] == user
    assert message.get("private", False) is private
    assert (message["id"], message["timestamp"]) == ("7", 5.0)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({**CHAT, "user": {"username": "a", "guest": "no"}}, "'user.guest' must be true or false"),
        ({**CHAT, "user": {"username": "a", "rank": True}}, "'user.rank' must be an integer"),
        ({**CHAT, "timestamp": "now"}, "'timestamp' must be a number"),
        ({**CHAT, "id": 1.5}, "field 'id' must be str or int, got float"),
    ],
)
def test_bad_chat_fields_are_named(body: dict[str, Any], problem: str) -> None:
    with pytest.raises(DecodeError) as info:
        wire.chat_message("rosey.events.message", body)
    assert problem in str(info.value)


def test_a_reply_error_must_be_text_or_null() -> None:
    with pytest.raises(DecodeError, match="'error' must be a string or null"):
        wire.parse_command_reply("s", b'{"ok": false, "error": 5}')
    reply = wire.parse_command_reply("s", b'{"ok": false, "error": "boom", "data": [1]}')
    assert reply == {"ok": False, "text": None, "data": [1], "error": "boom"}


@contextmanager
def stack_nearly_full(room: int) -> Iterator[None]:
    """Lower the recursion limit to ``room`` frames above the caller's depth."""
    depth = 0
    frame = sys._getframe()
    while frame.f_back is not None:
        frame, depth = frame.f_back, depth + 1
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(depth + room)
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


def test_a_body_decoded_on_a_deep_stack_is_refused_like_a_deep_body() -> None:
    """``json.loads`` raises ``RecursionError`` when the stack is already deep; decode answers
    with the same ``DecodeError`` as for a body nested too deep, never the raw error."""
    body = b"[" * 60 + b"]" * 60  # within MAX_DEPTH: fine on a normal stack
    assert wire.decode("s", body) is not None
    with stack_nearly_full(30), pytest.raises(DecodeError) as info:
        wire.decode("s", body)
    assert str(info.value) == "bad message on s: body nests deeper than 64 levels"


# -- subjects and admins -------------------------------------------------------------------------


def test_connector_subjects() -> None:
    assert subjects.connector_events_all("tube") == "rosey.plugins.tube.connector.>"
    assert subjects.connector_send("tube") == "rosey.connectors.tube.send"


@pytest.mark.parametrize("text", ["cytube:alice", "cytube:rank>=3", "console:console"])
def test_an_admin_entry_prints_as_written(text: str) -> None:
    assert str(parse_admin(text)) == text
