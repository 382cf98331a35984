"""The management API's request models without pydantic (``rosey.api.requests``, issue 13).

A table of what the validator does; then, for every action's request model, a comparison with
a pydantic model built here from the same declarations on generated input, strict and lax: the
same values accepted, the same problems in the same order, the same words on the faces. The
pydantic models the actions used before are kept here as a reference copy, and the models built
from our declarations must describe the same schema (a constraint lost on the way would make the
comparison compare nothing).
"""

from __future__ import annotations

from typing import Annotated, Any

import pydantic
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rosey.api.action import Action
from rosey.api.actions import ACTIONS
from rosey.api.requests import Invalid, Request, field
from rosey.errors import BadRequest

# ---------------------------------------------------------------- the validator, as a table


class Sample(Request):
    """Every field kind and constraint the actions use."""

    name: str = field(min_length=1, max_length=4)
    count: int = field(default=50, ge=1, le=10000)
    flag: bool = False
    cursor: str | None = field(default=None, pattern=r"^\d{1,20}:\d{1,20}$")
    limit: int | None = None


OK = object()


def outcome(data: dict[str, Any], strict: bool) -> Any:
    """The request's values, or ``[(kind, field), ...]``."""
    try:
        return Sample.model_validate(data, strict=strict).model_dump()
    except Invalid as exc:
        return [(p.kind, p.field) for p in exc.problems]


def values(**given: Any) -> dict[str, Any]:
    return {"name": "a", "count": 50, "flag": False, "cursor": None, "limit": None, **given}


@pytest.mark.parametrize(
    ("data", "strict", "expected"),
    [
        ({"name": "a"}, True, values()),
        ({"name": "abcd", "count": 7, "flag": True}, True, values(name="abcd", count=7, flag=True)),
        ({"name": "a", "cursor": "12:34", "limit": None}, True, values(cursor="12:34")),
        ({"name": "a", "limit": -5}, True, values(limit=-5)),
        # strict: JSON types as they are
        ({"name": "a", "count": "7"}, True, [("int_type", "count")]),
        ({"name": "a", "count": True}, True, [("int_type", "count")]),
        ({"name": "a", "count": 7.0}, True, [("int_type", "count")]),
        ({"name": "a", "flag": 1}, True, [("bool_type", "flag")]),
        ({"name": "a", "flag": "true"}, True, [("bool_type", "flag")]),
        ({"name": 5}, True, [("string_type", "name")]),
        ({"name": b"ab"}, True, [("string_type", "name")]),
        ({"name": None}, True, [("string_type", "name")]),
        # lax: words as pydantic reads them
        ({"name": "a", "count": "20"}, False, values(count=20)),
        ({"name": "a", "count": " 20 "}, False, values(count=20)),
        ({"name": "a", "count": "\xa020\u3000"}, False, values(count=20)),
        ({"name": "a", "count": "\x1c20"}, False, [("int_parsing", "count")]),
        ({"name": "a", "count": "+1_000"}, False, values(count=1000)),
        ({"name": "a", "count": "1__000"}, False, [("int_parsing", "count")]),
        ({"name": "a", "count": "20.00"}, False, values(count=20)),
        ({"name": "a", "count": "20."}, False, [("int_parsing", "count")]),
        ({"name": "a", "count": "20.5"}, False, [("int_parsing", "count")]),
        ({"name": "a", "count": "2e1"}, False, [("int_parsing", "count")]),
        ({"name": "a", "count": "٢٠"}, False, [("int_parsing", "count")]),
        ({"name": "a", "count": "0"}, False, [("greater_than_equal", "count")]),
        ({"name": "a", "count": "9" * 30}, False, [("less_than_equal", "count")]),
        ({"name": "a", "count": "9" * 4301}, False, [("int_parsing_size", "count")]),
        ({"name": "a", "count": "0" + "9" * 4301}, False, [("int_parsing", "count")]),
        ({"name": "a", "count": "0" * 5000 + "7"}, False, values(count=7)),
        ({"name": "a", "count": " " + "9" * 4301}, False, [("int_parsing", "count")]),
        ({"name": "a", "count": "9" * 4301 + ".5"}, False, [("int_parsing_size", "count")]),
        ({"name": "a", "count": "0__7"}, False, values(count=7)),
        ({"name": "a", "count": "0_1__2"}, False, [("int_parsing", "count")]),
        ({"name": "a", "count": "0-7"}, False, [("greater_than_equal", "count")]),
        ({"name": "a", "count": "0+7"}, False, [("int_parsing", "count")]),
        ({"name": "a", "count": "+-7"}, False, [("int_parsing", "count")]),
        ({"name": "a", "count": 20.0}, False, values(count=20)),
        ({"name": "a", "count": 20.5}, False, [("int_from_float", "count")]),
        ({"name": "a", "count": float("inf")}, False, [("finite_number", "count")]),
        ({"name": "a", "count": 1e20}, False, [("int_parsing_size", "count")]),
        ({"name": "a", "count": True}, False, values(count=1)),
        ({"name": "a", "count": b" 7 "}, False, values(count=7)),
        ({"name": "a", "count": bytearray(b"7")}, False, [("int_type", "count")]),
        ({"name": "a", "count": None}, False, [("int_type", "count")]),
        ({"name": "a", "flag": "YES"}, False, values(flag=True)),
        ({"name": "a", "flag": "off"}, False, values(flag=False)),
        ({"name": "a", "flag": " yes"}, False, [("bool_parsing", "flag")]),
        ({"name": "a", "flag": "ＹＥＳ"}, False, [("bool_parsing", "flag")]),
        ({"name": "a", "flag": 1}, False, values(flag=True)),
        ({"name": "a", "flag": 2}, False, [("bool_parsing", "flag")]),
        ({"name": "a", "flag": 2**70}, False, [("bool_type", "flag")]),
        ({"name": "a", "flag": 0.0}, False, values(flag=False)),
        ({"name": "a", "flag": 0.5}, False, [("bool_type", "flag")]),
        ({"name": "a", "flag": b"no"}, False, values(flag=False)),
        ({"name": "a", "flag": None}, False, [("bool_type", "flag")]),
        ({"name": b"ab"}, False, values(name="ab")),
        ({"name": b"\xff"}, False, [("string_unicode", "name")]),
        ({"name": 5}, False, [("string_type", "name")]),
        # constraints, in pydantic's order: length, then pattern; ge, then le
        ({"name": ""}, True, [("string_too_short", "name")]),
        ({"name": "abcde"}, True, [("string_too_long", "name")]),
        ({"name": "😀" * 4}, True, values(name="😀" * 4)),
        ({"name": "a", "cursor": "1:2\n"}, True, [("string_pattern_mismatch", "cursor")]),
        ({"name": "a", "cursor": "١:٢"}, True, values(cursor="١:٢")),
        ({"name": "a", "count": 0}, True, [("greater_than_equal", "count")]),
        ({"name": "a", "count": 10001}, True, [("less_than_equal", "count")]),
        # several problems: fields in declaration order, then unknown ones as given
        (
            {"zz": 1, "flag": "x", "count": "x", "aa": 2},
            False,
            [
                ("missing", "name"),
                ("int_parsing", "count"),
                ("bool_parsing", "flag"),
                ("extra_forbidden", "zz"),
                ("extra_forbidden", "aa"),
            ],
        ),
    ],
)
def test_the_validator(data: dict[str, Any], strict: bool, expected: Any) -> None:
    assert outcome(data, strict) == expected


def test_a_request_is_immutable_and_knows_what_was_given() -> None:
    request = Sample.model_validate({"name": "a", "flag": "yes"}, strict=False)
    assert request.model_fields_set == {"name", "flag"}
    assert request.model_dump(exclude_unset=True) == {"name": "a", "flag": True}
    with pytest.raises(AttributeError, match="immutable"):
        request.name = "b"  # type: ignore[misc]
    assert request == Sample(name="a", flag=True)
    assert hash(request) == hash(Sample(name="a", flag=True))
    assert repr(request) == "Sample(name='a', count=50, flag=True, cursor=None, limit=None)"


def test_the_fields_say_what_the_faces_read() -> None:
    fields = Sample.model_fields
    assert list(fields) == ["name", "count", "flag", "cursor", "limit"]
    assert fields["name"].is_required()
    assert not fields["count"].is_required()
    assert fields["flag"].annotation is bool
    assert fields["count"].default == 50
    assert fields["cursor"].annotation == str | None
    assert ACTIONS["remove"].request.model_fields["purge"].description


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("x: float = 1.0", "Bad.x: unsupported annotation 'float'"),
        ("x: 'list[str]'", "Bad.x: unsupported annotation"),
        ("x: str | int", "Bad.x: unsupported annotation"),
        ("x: int = field(min_length=1)", "Bad.x: min_length does not apply to int fields"),
        ("x: str = field(ge=1)", "Bad.x: ge does not apply to str fields"),
        ("x: bool = field(pattern='^y$')", "Bad.x: pattern does not apply to bool fields"),
        ("x: str = field(pattern='[0-9]')", "Bad.x: a pattern must be anchored"),
    ],
)
def test_an_unsupported_declaration_fails_when_the_class_is_made(body: str, message: str) -> None:
    source = f"from __future__ import annotations\nclass Bad(Request):\n    {body}\n"
    with pytest.raises(TypeError, match=message.replace("(", r"\(")):
        exec(source, {"Request": Request, "field": field})


# ------------------------------------------------- against pydantic, on generated requests


def pydantic_model(request: type[Request]) -> type[BaseModel]:
    """The pydantic model of ``request``'s declarations, as the actions declared it before."""
    fields: dict[str, Any] = {}
    for name, spec in request.model_fields.items():
        constraints = {
            key: getattr(spec, key)
            for key in ("min_length", "max_length", "pattern", "ge", "le")
            if getattr(spec, key) is not None
        }
        kind: Any = Annotated[spec.kind, Field(**constraints)] if constraints else spec.kind
        if spec.nullable:
            kind = kind | None
        if spec.description is not None:
            kind = Annotated[kind, Field(description=spec.description)]
        fields[name] = (kind, ...) if spec.is_required() else (kind, spec.default)
    config = ConfigDict(extra="forbid", frozen=True)
    model: type[BaseModel] = pydantic.create_model(request.__name__, __config__=config, **fields)
    return model


MODELS = {name: pydantic_model(a.request) for name, a in ACTIONS.items()}


class _Before(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_Name = Annotated[str, Field(min_length=1, max_length=64)]
_Source = Annotated[str, Field(min_length=1, max_length=4096)]
_YES = "accept the grants it asks for (else they are shown, and asked about at a terminal)"


class _Plugin(_Before):
    plugin: _Name


class _Logs(_Plugin):
    lines: Annotated[int, Field(ge=1, le=10000)] = 50
    cursor: Annotated[str, Field(pattern=r"^\d{1,20}:\d{1,20}$")] | None = None


class _Help(_Before):
    action: Annotated[str, Field(min_length=1, max_length=64)] | None = None


class _Install(_Before):
    source: _Source
    yes: Annotated[bool, Field(description=_YES)] = False
    plugin: Annotated[
        _Name | None, Field(description="refuse unless the source holds this plugin")
    ] = None


class _Update(_Plugin):
    source: _Source
    yes: Annotated[bool, Field(description=_YES)] = False
    force: Annotated[
        bool, Field(description="allow a version that is not higher than the installed one")
    ] = False


class _Remove(_Plugin):
    purge: Annotated[
        bool, Field(description="also delete its data folder and its kept versions")
    ] = False


#: The request models as they were declared with pydantic (before issue 13).
BEFORE: dict[str, type[BaseModel]] = {
    **{n: _Before for n in ("list", "rescan")},
    **{n: _Plugin for n in ("status", "start", "stop", "restart", "enable", "disable")},
    **{n: _Plugin for n in ("reload", "rollback")},
    "logs": _Logs,
    "help": _Help,
    "install": _Install,
    "update": _Update,
    "remove": _Remove,
}


def _schema(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema()
    schema.pop("title", None)
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)
    return schema


@pytest.mark.parametrize("name", sorted(BEFORE))
def test_the_declarations_are_those_of_before(name: str) -> None:
    """The pydantic model built from our declarations is the one the action had."""
    assert _schema(MODELS[name]) == _schema(BEFORE[name])


def test_every_action_is_compared() -> None:
    assert set(BEFORE) == set(ACTIONS)


def reference(model: type[BaseModel], data: Any, strict: bool) -> Any:
    try:
        made = model.model_validate(data, strict=strict)
    except ValidationError as exc:
        return [
            (e["type"], ".".join(str(p) for p in e["loc"]), e["msg"], repr(e["input"]))
            for e in exc.errors()
        ]
    return made.model_dump(), made.model_fields_set


def ours(request: type[Request], data: Any, strict: bool) -> Any:
    try:
        made = request.model_validate(data, strict=strict)
    except Invalid as exc:
        return [(p.kind, p.field, p.message, repr(p.value)) for p in exc.problems]
    return made.model_dump(), made.model_fields_set


def words_before(model: type[BaseModel], action: Action[Any], data: Any, strict: bool) -> str:
    """What the faces said before: ``describe`` of the pydantic error (its code, as it was)."""
    try:
        model.model_validate(data, strict=strict)
    except ValidationError as error:
        allowed = ", ".join(action.request.model_fields) or "none"
        problems: list[str] = []
        for item in error.errors():
            name = ".".join(str(part) for part in item["loc"])
            kind = item["type"]
            if kind == "extra_forbidden":
                problems.append(f"field {name!r} is not known to {action.name}; fields: {allowed}")
            elif kind == "missing":
                problems.append(f"field {name!r} is required ({action.name} takes: {allowed})")
            else:
                text = repr(item.get("input"))
                got = text if len(text) <= 40 else text[:37] + "..."
                message = str(item["msg"])
                message = message[0].lower() + message[1:] if message else kind
                problems.append(f"field {name!r}: {message} (got {got})")
        return "; ".join(problems)
    return ""


def words_now(action: Action[Any], data: Any, strict: bool) -> str:
    try:
        action.parse(data, strict=strict)
    except BadRequest as exc:
        return str(exc)
    return ""


#: Characters Python's Unicode tables know (pydantic's regex has newer ones: see the report).
_chars = st.characters(exclude_categories=("Cn", "Cs"))
_space = st.sampled_from(["", " ", "\t", "\n", "\xa0", "\u3000", "\x1c", "\u2028", "\u200b"])
_digits = st.text(st.sampled_from("0123456789١٢"), min_size=0, max_size=6)
_number_words = st.builds(
    lambda pad1, sign, a, sep, b, dot, frac, pad2: f"{pad1}{sign}{a}{sep}{b}{dot}{frac}{pad2}",
    _space,
    st.sampled_from(["", "", "+", "-", "+-", "--"]),
    _digits,
    st.sampled_from(["", "", "_", "__", ".", " ", "-", "+", "_."]),
    _digits,
    st.sampled_from(["", "", ".", ".."]),
    st.sampled_from(["", "0", "00", "5", "0_0", "e1"]),
    _space,
)
_bool_words = st.builds(
    lambda pad1, word, pad2: f"{pad1}{word}{pad2}",
    st.sampled_from(["", "", "", " ", "\n"]),
    st.sampled_from(
        ["yes", "no", "true", "false", "on", "off", "t", "f", "y", "n", "1", "0"]
    ).flatmap(lambda w: st.sampled_from([w, w.upper(), w.title(), w + "x", w[:-1]])),
    st.sampled_from(["", "", "", " "]),
)
_cursors = st.builds(
    lambda a, sep, b, tail: f"{a}{sep}{b}{tail}",
    st.text(st.sampled_from("0123456789١"), max_size=22),
    st.sampled_from([":", ":", "::", ";", ""]),
    st.text(st.sampled_from("0123456789"), max_size=22),
    st.sampled_from(["", "", "\n", " ", "x"]),
)
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-3, max_value=10002),
    st.floats(),
    st.sampled_from([0.0, 1.0, -0.0, 2.0, 0.5, 20.0, 1e20, 2.0**63, -(2.0**63)]),
    st.text(_chars, max_size=70),
    _number_words,
    _bool_words,
    _cursors,
    st.binary(max_size=8),
    st.sampled_from([b"20", b" 7 ", b"yes", b"\xff", bytearray(b"5")]),
)
_values = st.one_of(
    _scalars,
    st.lists(_scalars, max_size=2),
    st.dictionaries(st.text(max_size=3), _scalars, max_size=2),
)


@st.composite
def requests(draw: st.DrawFn, name: str) -> dict[str, Any]:
    """A body for action ``name``: each field given or not, unknown keys too, in any order."""
    keys = [k for k in ACTIONS[name].request.model_fields if draw(st.booleans())]
    extra = draw(st.lists(st.sampled_from(["plugin", "force", "x", "lines", "Plugin"]), max_size=2))
    keys = draw(st.permutations(list(dict.fromkeys([*keys, *extra]))))
    return {key: draw(_values) for key in keys}


@pytest.mark.parametrize("name", sorted(ACTIONS))
@pytest.mark.parametrize("strict", [True, False])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_the_same_as_pydantic(name: str, strict: bool, data: st.DataObject) -> None:
    body = data.draw(requests(name))
    action = ACTIONS[name]
    assert ours(action.request, body, strict) == reference(MODELS[name], body, strict)
    assert words_now(action, body, strict) == words_before(MODELS[name], action, body, strict)


@pytest.mark.parametrize("strict", [True, False])
@given(value=_values)
@settings(max_examples=1000, deadline=None)
@example(value="9" * 4301)
@example(value="-" + "9" * 4301 + ".0")
@example(value="+" + "9" * 4301)
@example(value="9" * 4300 + "_9")
@example(value="0" * 4400 + "9" * 25)
@example(value="٣" * 2200)
@example(value="9" * 4301 + ".5")
def test_each_field_kind_as_pydantic(strict: bool, value: Any) -> None:
    """One value in every field of ``Sample``: more examples per kind than whole requests."""
    model = pydantic_model(Sample)
    for key in Sample.model_fields:
        body = {"name": "a", key: value}
        assert ours(Sample, body, strict) == reference(model, body, strict), key
