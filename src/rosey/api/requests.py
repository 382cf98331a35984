"""Request models of the management actions, validated without pydantic (issue 13).

A running bot answers ``list``, ``status``, ``logs``, ... all day; pydantic (its Rust core, its
modules, a validator per model: ~10 MiB of the manager) is not needed for that. The requests
use a handful of field kinds, and this module supports exactly those:

* ``str``, with ``min_length``, ``max_length`` and an anchored ``pattern`` (``^...$``);
* ``int``, with ``ge`` and ``le``;
* ``bool``;

each possibly ``| None`` and with a default, and a ``description``. Anything else fails when the
class is created (a ``TypeError`` naming class and field), not when a request arrives.

The behaviour is pydantic's (2.x), which these models replaced, to the error texts: the faces
quote them (``field 'lines': input should be greater than or equal to 1 (got 0)``), and a test
compares this module with pydantic models built from the same declarations on generated input.
``strict`` (JSON bodies) takes JSON types as they are; lax (chat and CLI words) parses strings
as pydantic's lax mode does ("20" and " 20 " are 20, "yes" is True: ``rosey.api.coercion``).
Problems come in pydantic's order: the fields in declaration order, then unknown fields in the
order given; for one field, the first constraint it breaks (length, then pattern; ge, then le).
"""

from __future__ import annotations

import inspect
import re
import types
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Self, dataclass_transform

from rosey.api.coercion import Fail, as_bool, as_int, as_str, fail

__all__ = ["REQUIRED", "FieldSpec", "Invalid", "Problem", "Request", "field"]


class _Required:
    """The default of a field that has none: it must be given."""

    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Final = _Required()


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a request, as pydantic reported it: ``kind`` is its error type
    (``missing``, ``int_parsing``, ...), ``message`` its words, ``value`` the input."""

    kind: str
    field: str
    message: str
    value: Any


class Invalid(Exception):
    """A request does not fit its model. Internal to ``rosey.api``: ``Action.parse`` turns it
    into ``BadRequest`` with the problems in words (as pydantic's ValidationError was)."""

    def __init__(self, model: type[Request], problems: list[Problem]) -> None:
        self.model = model
        self.problems = problems
        super().__init__(f"{model.__name__}: " + "; ".join(p.message for p in problems))


@dataclass(frozen=True)
class FieldSpec:
    """One declared field: what ``Request.model_fields`` maps its name to.

    ``annotation`` is as declared (``str | None``); ``kind`` the type under it.
    """

    name: str = ""
    annotation: Any = None
    kind: type = object
    nullable: bool = False
    default: Any = REQUIRED
    description: str | None = None
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    ge: int | None = None
    le: int | None = None

    def is_required(self) -> bool:
        return self.default is REQUIRED

    def check(self, value: Any, *, strict: bool) -> Any:
        """The field's value for the input ``value``; ``Fail`` with pydantic's words."""
        if value is None and self.nullable:
            return None
        if self.kind is str:
            return self._check_str(value, strict=strict)
        if self.kind is int:
            return self._check_int(value, strict=strict)
        return as_bool(value, strict=strict)

    def _check_str(self, value: Any, *, strict: bool) -> str:
        text = as_str(value, strict=strict)
        if self.min_length is not None and len(text) < self.min_length:
            n = self.min_length
            fail("string_too_short", f"String should have at least {n} character{_s(n)}")
        if self.max_length is not None and len(text) > self.max_length:
            n = self.max_length
            fail("string_too_long", f"String should have at most {n} character{_s(n)}")
        if self.pattern is not None and _compiled(self.pattern).fullmatch(text) is None:
            fail("string_pattern_mismatch", f"String should match pattern '{self.pattern}'")
        return text

    def _check_int(self, value: Any, *, strict: bool) -> int:
        number = as_int(value, strict=strict)
        if self.ge is not None and number < self.ge:
            fail("greater_than_equal", f"Input should be greater than or equal to {self.ge}")
        if self.le is not None and number > self.le:
            fail("less_than_equal", f"Input should be less than or equal to {self.le}")
        return number


def field(
    *,
    default: Any = REQUIRED,
    description: str | None = None,
    min_length: int | None = None,
    max_length: int | None = None,
    pattern: str | None = None,
    ge: int | None = None,
    le: int | None = None,
) -> Any:
    """Declare a request field's default, description and constraints (the class annotation
    gives its type): ``lines: int = field(default=50, ge=1, le=10000)``."""
    return FieldSpec(
        default=default,
        description=description,
        min_length=min_length,
        max_length=max_length,
        pattern=pattern,
        ge=ge,
        le=le,
    )


@dataclass_transform(kw_only_default=True, frozen_default=True, field_specifiers=(field,))
class Request:
    """Base of every request model: unknown fields are errors, values are immutable.

    Subclasses declare fields as annotations (``plugin: str = field(min_length=1)``);
    ``model_validate`` builds one from a request body, ``model_dump`` gives it back.
    """

    #: The fields, in declaration order (a base class's first).
    model_fields: ClassVar[Mapping[str, FieldSpec]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        fields = dict(cls.model_fields)
        for name, declared in inspect.get_annotations(cls).items():
            fields[name] = _declare(cls, name, declared)
            if name in cls.__dict__:
                delattr(cls, name)  # values live on the instances
        cls.model_fields = types.MappingProxyType(fields)

    def __init__(self, **values: Any) -> None:
        """Build one from keyword values, checked leniently (as a pydantic model's
        constructor does); ``Invalid`` if they do not fit."""
        self._fill(type(self)._checked(values, strict=False), frozenset(values))

    @classmethod
    def model_validate(cls, data: Any, *, strict: bool) -> Self:
        """The request for ``data`` (a dict), or ``Invalid`` listing every problem."""
        if not isinstance(data, dict):
            problem = Problem("model_type", "", "Input should be a valid dictionary", data)
            raise Invalid(cls, [problem])
        made = cls.__new__(cls)
        made._fill(
            cls._checked(data, strict=strict), frozenset(k for k in data if k in cls.model_fields)
        )
        return made

    @classmethod
    def _checked(cls, data: Mapping[Any, Any], *, strict: bool) -> dict[str, Any]:
        values: dict[str, Any] = {}
        problems: list[Problem] = []
        for name, spec in cls.model_fields.items():
            if name not in data:
                if spec.is_required():
                    problems.append(Problem("missing", name, "Field required", dict(data)))
                else:
                    values[name] = spec.default
                continue
            try:
                values[name] = spec.check(data[name], strict=strict)
            except Fail as failed:
                problems.append(Problem(failed.kind, name, failed.message, data[name]))
        for key, value in data.items():
            if key not in cls.model_fields:
                extra = "Extra inputs are not permitted"
                problems.append(Problem("extra_forbidden", str(key), extra, value))
        if problems:
            raise Invalid(cls, problems)
        return values

    def _fill(self, values: dict[str, Any], given: frozenset[str]) -> None:
        for name, value in values.items():
            object.__setattr__(self, name, value)
        object.__setattr__(self, "_given", given)

    @property
    def model_fields_set(self) -> frozenset[str]:
        """The fields the input gave (the others have their defaults)."""
        given: frozenset[str] = self.__dict__["_given"]
        return given

    def model_dump(self, *, exclude_unset: bool = False) -> dict[str, Any]:
        """The fields and their values (only those the input gave, with ``exclude_unset``)."""
        names = self.model_fields_set if exclude_unset else self.model_fields
        return {name: getattr(self, name) for name in self.model_fields if name in names}

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable: cannot delete {name!r}")

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, Request)
        return self.model_dump() == other.model_dump()

    def __hash__(self) -> int:
        return hash((type(self), tuple(self.model_dump().values())))

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self.model_dump().items())
        return f"{type(self).__name__}({fields})"


#: The annotations a request field may have, as ``from __future__ import annotations`` leaves
#: them (strings); a table, not ``eval``, so that nothing else can creep in.
_ANNOTATIONS: dict[str, Any] = {
    "str": str,
    "int": int,
    "bool": bool,
    "str | None": str | None,
    "int | None": int | None,
    "bool | None": bool | None,
}
_KINDS = (str, int, bool)
_CONSTRAINTS = {str: ("min_length", "max_length", "pattern"), int: ("ge", "le"), bool: ()}


def _declare(cls: type, name: str, declared: Any) -> FieldSpec:
    """The ``FieldSpec`` of ``cls.name``; ``TypeError`` for what this module does not support."""
    where = f"{cls.__name__}.{name}"
    annotation = _ANNOTATIONS.get(declared) if isinstance(declared, str) else declared
    kind, nullable = _kind(annotation)
    if kind is None:
        raise TypeError(
            f"{where}: unsupported annotation {declared!r}; a request field is str, int or bool, "
            "optionally | None"
        )
    given = cls.__dict__.get(name, REQUIRED)
    spec = given if isinstance(given, FieldSpec) else FieldSpec(default=given)
    allowed = _CONSTRAINTS[kind]
    for constraint in ("min_length", "max_length", "pattern", "ge", "le"):
        if getattr(spec, constraint) is not None and constraint not in allowed:
            raise TypeError(f"{where}: {constraint} does not apply to {kind.__name__} fields")
    if spec.pattern is not None and not (
        spec.pattern.startswith("^") and spec.pattern.endswith("$")
    ):
        raise TypeError(f"{where}: a pattern must be anchored, ^...$ (got {spec.pattern!r})")
    if spec.pattern is not None:
        _compiled(spec.pattern)  # a bad pattern fails here, not at the first request
    return FieldSpec(
        name=name,
        annotation=annotation,
        kind=kind,
        nullable=nullable,
        default=spec.default,
        description=spec.description,
        min_length=spec.min_length,
        max_length=spec.max_length,
        pattern=spec.pattern,
        ge=spec.ge,
        le=spec.le,
    )


def _kind(annotation: Any) -> tuple[type | None, bool]:
    """``(str, False)`` for ``str``, ``(int, True)`` for ``int | None``; ``None`` otherwise."""
    if annotation in _KINDS:
        return annotation, False
    if isinstance(annotation, types.UnionType):
        args = [a for a in annotation.__args__ if a is not type(None)]
        if len(annotation.__args__) == 2 and len(args) == 1 and args[0] in _KINDS:
            return args[0], True
    return None, False


_PATTERNS: dict[str, re.Pattern[str]] = {}


def _compiled(pattern: str) -> re.Pattern[str]:
    """``^X$`` as pydantic's (Rust) regex reads it: ``$`` is the very end, not before a final
    newline as in Python's ``re``, hence ``fullmatch`` of ``X``."""
    found = _PATTERNS.get(pattern)
    if found is None:
        found = _PATTERNS[pattern] = re.compile(f"(?:{pattern[1:-1]})")
    return found


def _s(n: int) -> str:
    return "" if n == 1 else "s"
