"""``rosey plugin validate`` checks manifests against the published JSON Schema (issue 17 item 15).

The schema is generated from the model discovery validates with, so the two must agree on what
is valid; where they differ, they do on purpose (``rosey.plugins.schema_check``): pydantic's
leniency ("256" for a whole number) is what the schema adds, the model's own validators (PEP 508,
items listed twice) are what it cannot say. Problems the model already reported are not repeated.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from rosey.cli.schema import SCHEMA_FILES, generate
from rosey.errors import ManifestError
from rosey.plugins.schema_check import new_problems, schema_file_problems, schema_problems
from rosey.protocol.manifest import manifest_problems
from rosey.protocol.problems import Problem, load_yaml_lines, yaml_lines

REPO = Path(__file__).resolve().parents[2]
SCHEMA = generate("plugin")
GOOD = {"name": "dice", "version": "1.0.0", "entrypoint": "dice:DicePlugin"}
#: Every manifest the repository ships: example plugins and the test fixtures.
MANIFESTS = sorted(
    [*(REPO / "plugins").glob("*/plugin.yaml"), *(REPO / "tests" / "fixtures").rglob("plugin.yaml")]
)


def test_validate_uses_the_published_schema_and_it_is_a_valid_2020_12_schema() -> None:
    published = json.loads((REPO / SCHEMA_FILES["plugin"]).read_text())
    assert published == SCHEMA
    Draft202012Validator.check_schema(SCHEMA)


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: str(p.parent.relative_to(REPO)))
def test_schema_and_model_agree_on_every_shipped_manifest(path: Path) -> None:
    data, lines = load_yaml_lines(path)
    by_model = manifest_problems(data, str(path), lines)
    by_schema = schema_problems(data, SCHEMA, lines)
    assert (by_model == []) == (by_schema == []), (by_model, by_schema)


def test_the_shipped_manifests_are_there() -> None:
    """The agreement test above covers something: the examples and the fixtures."""
    assert len(MANIFESTS) >= 40
    assert {"dice", "trivia"} <= {p.parent.name for p in MANIFESTS}


# Both refuse, at the same field, in the same words: validate says it once.
BOTH_REFUSE = [
    ({"name": "Dice"}, "name", "'Dice' is not allowed; expected a lowercase name"),
    ({"version": "1.0"}, "version", "expected a semantic version such as 1.0.0"),
    ({"entrypoint": "dice"}, "entrypoint", "expected 'module:Class'"),
    ({"kind": "bot"}, "kind", "'bot' is not allowed; expected 'plugin' or 'connector'"),
    ({"restart_policy": "sometimes"}, "restart_policy", "'always', 'on-failure' or 'never'"),
    ({"permissions": ["root"]}, "permissions.0", "'root' is not allowed; expected one of"),
    ({"commands": ["Roll"]}, "commands.0", "expected a lowercase command word"),
    ({"commands": "roll"}, "commands", "'roll' is not allowed; expected a list, e.g. [a, b]"),
    ({"limits": {"memory": 5}}, "limits.memory", "unknown key; allowed keys here: memory_mb, "),
    ({"limits": {"memory_mb": 8}}, "limits.memory_mb", "8 is not allowed; expected a whole "),
    ({"limits": {"memory_mb": True}}, "limits.memory_mb", "from 16 to 1048576"),
    ({"limits": None}, "limits", "None is not allowed; expected a mapping of keys to values"),
    ({"health": {"interval_s": 0}}, "health.interval_s", "expected a number above 0 and at"),
    ({"health": {"failure_threshold": 2.5}}, "health.failure_threshold", "from 1 to 100"),
    ({"stop_timeout_s": 86401}, "stop_timeout_s", "86401 is not allowed; expected a number"),
    ({"description": 5}, "description", "5 is not allowed; expected a text (put it in quotes)"),
    ({"critical": "maybe"}, "critical", "'maybe' is not allowed; expected true or false"),
    ({"colour": "red"}, "colour", "unknown key; allowed keys here: name, version, "),
    ({"requires_rosey": 5}, "requires_rosey", "5 is not allowed; expected a text"),
]


@pytest.mark.parametrize(("change", "field", "words"), BOTH_REFUSE)
def test_both_refuse_the_same_field_and_validate_says_it_once(
    change: dict[str, Any], field: str, words: str
) -> None:
    data = {**GOOD, **change}
    by_model = manifest_problems(data, "plugin.yaml")
    by_schema = schema_problems(data, SCHEMA)
    assert [p.field for p in by_model] == [field]
    assert [p.field for p in by_schema] == [field]
    assert words in by_schema[0].problem
    assert words in by_model[0].problem
    assert new_problems("plugin.yaml", by_schema, by_model) == []


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (None, [("", "must be a YAML mapping of keys to values")]),
        (["a"], [("", "must be a YAML mapping of keys to values")]),
        ({"version": "1.0.0"}, [("name", "is required"), ("entrypoint", "is required")]),
    ],
)
def test_whole_file_and_missing_keys(data: Any, expected: list[tuple[str, str]]) -> None:
    assert [(p.field, p.problem) for p in schema_problems(data, SCHEMA)] == expected
    assert [(p.field, p.problem) for p in manifest_problems(data, "f")] == expected


# Only the schema refuses: pydantic's leniency. Validate reports these (the bot would run them).
SCHEMA_ONLY = [
    (
        {"limits": {"memory_mb": "256"}},
        "limits.memory_mb",
        "'256' is not allowed; expected a whole number from 16 to 1048576, without quotes",
    ),
    (
        {"critical": "true"},
        "critical",
        "'true' is not allowed; expected true or false, without quotes",
    ),
    ({"critical": 1}, "critical", "1 is not allowed; expected true or false"),
    (
        {"stop_timeout_s": True},
        "stop_timeout_s",
        "True is not allowed; expected a number above 0 and at most 86400",
    ),
    (
        {"health": {"timeout_s": "2"}},
        "health.timeout_s",
        "'2' is not allowed; expected a number above 0 and at most 86400, without quotes",
    ),
]


@pytest.mark.parametrize(("change", "field", "words"), SCHEMA_ONLY)
def test_what_only_the_schema_refuses_is_reported(
    change: dict[str, Any], field: str, words: str
) -> None:
    data = {**GOOD, **change}
    assert manifest_problems(data, "plugin.yaml") == []
    found = new_problems("plugin.yaml", schema_problems(data, SCHEMA), [])
    assert [(p.file, p.field, p.problem) for p in found] == [("plugin.yaml", field, words)]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"requirements": ["six=="]}, "requirements"),
        ({"requirements": ["rosey==0.1"]}, "requirements"),
        ({"requires_rosey": "soon"}, "requires_rosey"),
        ({"commands": ["roll", "roll"]}, "commands"),
        ({"config": {1: "a"}}, "config.1"),
    ],
)
def test_what_only_the_model_refuses_is_not_the_schemas_to_say(
    change: dict[str, Any], field: str
) -> None:
    """The model's own validators: no schema keyword states them (validate still reports them,
    from the model)."""
    data = {**GOOD, **change}
    assert [p.field for p in manifest_problems(data, "plugin.yaml")] == [field]
    assert schema_problems(data, SCHEMA) == []


def test_problems_carry_the_yaml_line_in_the_files_order() -> None:
    text = (
        "name: dice\n"
        "version: 1.0.0\n"
        "entrypoint: dice:DicePlugin\n"
        "limits:\n"
        "  memory_mb: '256'\n"
        "critical: 'yes'\n"
        "permissions: [chat.send, root]\n"
        "colour: red\n"
    )
    data, lines = yaml_lines(text)
    found = schema_problems(data, SCHEMA, lines)
    assert [(p.line, p.field) for p in found] == [
        (5, "limits.memory_mb"),
        (6, "critical"),
        (7, "permissions.1"),
        (8, "colour"),
    ]
    messages = [str(p) for p in new_problems("p/plugin.yaml", found, [])]
    assert messages[0] == (
        "p/plugin.yaml:5: limits.memory_mb: '256' is not allowed; expected a whole number "
        "from 16 to 1048576, without quotes"
    )


def test_problems_without_a_line_come_last() -> None:
    data, lines = yaml_lines("version: x\nentrypoint: m:C\n")
    found = schema_problems(data, SCHEMA, lines)
    assert [(p.field, p.line) for p in found] == [("version", 1), ("name", None)]


@pytest.mark.parametrize(
    ("schema_field", "reported", "repeated"),
    [
        ("limits.memory_mb", [("plugin.yaml", "limits.memory_mb")], False),  # the same field
        ("limits.memory_mb", [("plugin.yaml", "limits")], False),  # the one around it
        ("limits", [("plugin.yaml", "limits.memory_mb")], False),  # one inside it
        ("critical", [("plugin.yaml", "")], False),  # the whole file
        ("critical", [("plugin.yaml", "limits.memory_mb")], True),  # another field
        ("limits_x", [("plugin.yaml", "limits")], True),  # a prefix is not a parent
        ("critical", [("other/plugin.yaml", "critical")], True),  # another file
        ("critical", [], True),
    ],
)
def test_a_problem_the_model_reported_is_not_repeated(
    schema_field: str, reported: list[tuple[str, str]], repeated: bool
) -> None:
    problem = Problem(schema_field, "is wrong", 3)
    previous = [ManifestError(file, field, "said before") for file, field in reported]
    found = new_problems("plugin.yaml", [problem], previous)
    expected = [f"plugin.yaml:3: {schema_field}: is wrong"] if repeated else []
    assert [str(p) for p in found] == expected


def test_files_checked_skip_what_discovery_could_not_read(tmp_path: Path) -> None:
    lenient = tmp_path / "lenient.yaml"
    lenient.write_text("name: dice\nversion: 1.0.0\nentrypoint: d:D\ncritical: 'true'\n")
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [\n")
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe")
    both = tmp_path / "both.yaml"
    both.write_text("name: Dice\nversion: 1.0.0\nentrypoint: d:D\n")
    reported = [ManifestError(str(both), "name", "'Dice' is not allowed")]
    found = schema_file_problems([lenient, broken, binary, both], SCHEMA, reported)
    assert [str(p) for p in found] == [
        f"{lenient}:4: critical: 'true' is not allowed; expected true or false, without quotes"
    ]


def test_a_keyword_without_words_of_ours_says_the_schemas_message() -> None:
    schema = {"type": "object", "properties": {"tags": {"type": "array", "maxItems": 1}}}
    (problem,) = schema_problems({"tags": [1, 2]}, schema)
    assert problem.field == "tags"
    assert problem.problem.endswith("(the schema's 'maxItems' rule)")
    assert "is too long" in problem.problem


def test_an_unknown_pattern_and_a_branch_that_is_not_a_type_are_said_plainly() -> None:
    schema = {
        "type": "object",
        "properties": {
            "code": {"type": "string", "pattern": "^[A-Z]{3}$"},
            "size": {"anyOf": [{"type": "integer"}, {"enum": ["auto"]}]},
            "hint": {"type": "string", "pattern": "^x", "minLength": 2},
        },
    }
    found = {p.field: p.problem for p in schema_problems({"code": "ab", "size": "big"}, schema)}
    assert found["code"] == "'ab' is not allowed; expected a value matching ^[A-Z]{3}$"
    assert found["size"].endswith("(the schema's 'anyOf' rule)")
    single = schema_problems({"size": 3.5}, {"properties": {"size": {"enum": ["auto"]}}})
    assert [p.problem for p in single] == ["3.5 is not allowed; expected 'auto'"]
    untyped = schema_problems({"n": 0}, {"properties": {"n": {"minimum": 1}}})
    assert [p.problem for p in untyped] == ["0 is not allowed; expected another value at least 1"]
    floats = {"properties": {"s": {"type": "number", "minimum": 0.5, "maximum": 10.0}}}
    assert [p.problem for p in schema_problems({"s": 11}, floats)] == [
        "11 is not allowed; expected a number from 0.5 to 10"
    ]


# A value for each key, valid or not: what YAML can hold (no trailing newline in texts: Python's
# ``re`` lets ``$`` match before one and pydantic's regex does not; pydantic reports those).
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-5, max_value=2_000_000),
    st.floats(min_value=-1, max_value=100_000, allow_nan=False),
    st.sampled_from(["", "1.0.0", "dice", "m:C", "always", "plugin", "chat.send", "256", "x y"]),
)
_VALUES = st.one_of(
    _SCALARS,
    st.lists(_SCALARS, max_size=3),
    st.dictionaries(
        st.sampled_from(["memory_mb", "interval_s", "failure_threshold", "other"]),
        _SCALARS,
        max_size=3,
    ),
)
_KEYS = st.sampled_from(
    [
        *("name", "version", "entrypoint", "kind", "commands", "dependencies", "restart_policy"),
        *("critical", "permissions", "limits", "health", "stop_timeout_s", "description", "x"),
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_KEYS, _VALUES, max_size=4))
def test_model_and_schema_disagree_only_where_documented(change: dict[str, Any]) -> None:
    """Where the model refuses a field for a reason the schema states (not its own validators),
    the schema refuses that field too; where only the schema refuses, the model took the value
    by coercing a quoted number, a number for true/false, or true/false for a number."""
    data = {**GOOD, **change}
    by_model = manifest_problems(data, "f")
    by_schema = schema_problems(data, SCHEMA)
    schema_fields = {p.field for p in by_schema}
    for problem in by_model:
        if "listed twice" in problem.problem:
            continue  # the model's own validator
        assert any(
            f == problem.field or f.startswith(problem.field + ".") for f in schema_fields
        ), (problem, by_schema)
    for extra in new_problems("f", by_schema, by_model):
        value: Any = data
        for part in extra.field.split("."):
            value = value[part]
        if "true or false" in extra.problem:  # a quoted word or a number taken for a bool
            assert not isinstance(value, bool), extra
            assert isinstance(value, str | int | float), extra
        else:  # a quoted number, or true/false taken for a number
            assert "number" in extra.problem, extra
            assert isinstance(value, str | bool), extra
