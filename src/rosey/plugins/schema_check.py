"""``plugin.yaml`` against the published JSON Schema: the check ``rosey plugin validate`` adds.

The schema (``docs/schema/plugin.schema.json``, ``rosey schema plugin``) is generated from the
model discovery validates with (``rosey.protocol.manifest.Manifest``), so the two agree on
almost every manifest. They differ in two ways, both on purpose:

- pydantic is lenient where the schema is not: it takes ``"256"`` for a whole number,
  ``"true"``, ``"yes"`` or ``1`` for true/false and ``true`` for a number of seconds, which an
  editor checking the file with the schema flags;
- the model checks what no schema states: PEP 508 ``requirements``, the ``requires_rosey``
  range, an item listed twice.

``validate`` applies both, so a manifest it passes is one every editor using the schema accepts
too. The schema's problems are said in the model's words (``rosey.protocol.problems``), with
the YAML line, and a problem the model already reported for the same field is not repeated.
Pure apart from reading the manifests (``schema_file_problems``). The caller passes the schema:
``validate`` generates it (``rosey.cli.schema.generate``, which a test keeps equal to the
published file), since an installed Rosey has no ``docs/`` folder to read it from.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from rosey.errors import ManifestError
from rosey.protocol.manifest import ALLOWED_BY_PATTERN
from rosey.protocol.problems import Lines, Problem, YamlFileError, line_of, load_yaml_lines

__all__ = ["new_problems", "schema_file_problems", "schema_problems"]

#: A JSON type in the model's words (``rosey.protocol.problems``).
_TYPE_WORDS = {
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "string": "a text (put it in quotes)",
    "array": "a list, e.g. [a, b]",
    "object": "a mapping of keys to values",
    "null": "null",
}
_BOUND_WORDS = {
    "minimum": "at least",
    "exclusiveMinimum": "above",
    "maximum": "at most",
    "exclusiveMaximum": "below",
}

Where = tuple[str | int, ...]


def schema_problems(
    data: Any, schema: Mapping[str, Any], lines: Lines | None = None
) -> list[Problem]:
    """Every way ``data`` breaks ``schema``, each once, in the file's order (no line: last)."""
    found: dict[tuple[str, str], Problem] = {}
    for error in Draft202012Validator(schema).iter_errors(data):
        for loc, text in _explain(error):
            field = ".".join(str(part) for part in loc)
            found.setdefault((field, text), Problem(field, text, line_of(lines or {}, loc)))
    return sorted(found.values(), key=lambda p: (p.line is None, p.line or 0))


def new_problems(
    source: str, problems: Iterable[Problem], reported: Iterable[ManifestError]
) -> list[ManifestError]:
    """The schema's ``problems`` of file ``source`` that ``reported`` does not already cover.

    A reported problem covers its field, the fields inside it and the fields around it
    (``limits`` covers ``limits.memory_mb`` and the other way round); one about the whole file
    covers everything.
    """
    taken = [p.field for p in reported if p.file == source]
    return [
        ManifestError(source, p.field, p.problem, line=p.line)
        for p in problems
        if not any(_overlaps(p.field, field) for field in taken)
    ]


def schema_file_problems(
    files: Iterable[Path], schema: Mapping[str, Any], reported: Sequence[ManifestError]
) -> list[ManifestError]:
    """What ``schema`` finds in each manifest file beyond ``reported`` (discovery's problems).

    A file that cannot be read or parsed is skipped: discovery has said so already.
    """
    problems: list[ManifestError] = []
    for path in files:
        try:
            data, lines = load_yaml_lines(path)
        except YamlFileError:
            continue
        problems += new_problems(str(path), schema_problems(data, schema, lines), reported)
    return problems


def _overlaps(field: str, other: str) -> bool:
    if not field or not other or field == other:
        return True
    return field.startswith(other + ".") or other.startswith(field + ".")


def _explain(error: ValidationError) -> list[tuple[Where, str]]:
    """``(where, problem)`` for one schema error; a keyword about keys names each key."""
    here: Where = tuple(error.absolute_path)
    keyword = error.validator
    value: Any = error.validator_value
    got: Any = error.instance
    schema: Mapping[str, Any] = error.schema if isinstance(error.schema, Mapping) else {}
    if keyword == "required":
        return [((*here, key), "is required") for key in value if key not in got]
    if keyword == "additionalProperties":
        allowed = list(schema.get("properties", {}))
        text = "unknown key; allowed keys here: " + ", ".join(allowed)
        return [((*here, key), text) for key in got if key not in allowed]
    if keyword == "type" and not here:
        return [((), "must be a YAML mapping of keys to values")]
    if keyword in ("type", *_BOUND_WORDS):
        return [(here, f"{got!r} is not allowed; expected {_wanted(schema, got)}")]
    if keyword == "anyOf":
        branches = [b.get("type") for b in value if isinstance(b, Mapping)]
        if all(isinstance(kind, str) for kind in branches):
            wanted = " or ".join(_TYPE_WORDS.get(str(kind), str(kind)) for kind in branches)
            return [(here, f"{got!r} is not allowed; expected {wanted}")]
    if keyword == "pattern":
        wanted = ALLOWED_BY_PATTERN.get(str(value), f"a value matching {value}")
        return [(here, f"{got!r} is not allowed; expected {wanted}")]
    if keyword == "enum":
        return [(here, f"{got!r} is not allowed; expected {_one_of(value)}")]
    return [(here, f"{error.message} (the schema's {keyword!r} rule)")]


def _wanted(schema: Mapping[str, Any], got: Any) -> str:
    """``a whole number from 16 to 1048576``: the type and range the schema gives a field."""
    kind = schema.get("type")
    words = _TYPE_WORDS.get(kind, str(kind)) if isinstance(kind, str) else "another value"
    pattern = schema.get("pattern")
    if kind == "string" and pattern in ALLOWED_BY_PATTERN:
        words = f"{ALLOWED_BY_PATTERN[pattern]} (a text: put it in quotes)"
    bounds = {key: schema[key] for key in _BOUND_WORDS if key in schema}
    low, high = bounds.get("minimum"), bounds.get("maximum")
    if low is not None and high is not None:
        span = f" from {_num(low)} to {_num(high)}"
    else:
        parts = [f"{_BOUND_WORDS[key]} {_num(limit)}" for key, limit in bounds.items()]
        span = f" {' and '.join(parts)}" if parts else ""
    quoted = isinstance(got, str) and kind in ("integer", "number", "boolean")
    return words + span + (", without quotes" if quoted else "")


def _one_of(options: Sequence[Any]) -> str:
    """``'always', 'on-failure' or 'never'`` (as pydantic says a Literal's values)."""
    quoted = [repr(option) for option in options]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"


def _num(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
