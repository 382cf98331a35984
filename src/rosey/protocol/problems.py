"""YAML files validated by pydantic models, reported in our words with line numbers.

One helper for the bot config (``rosey.config``) and the manifests (``rosey.protocol.manifest``,
``rosey.plugins.discovery``): ``load_yaml_lines`` reads a file and remembers the line of every
key and list item (from the composed node tree, so aliases and flow style count too), and
``describe`` turns a ``ValidationError`` into every ``Problem`` at once: the field as a dotted
path, a sentence saying what is allowed (never pydantic's "Input should be ..."), and the line.

Off the plugin process's import path (pydantic, YAML), like the manifest model.

Imported before any model is built (``rosey.protocol.manifest`` imports it first), it also
keeps pydantic from looking for plugins of its own (``skip_pydantic_plugins``).
"""

from __future__ import annotations

import sys
import types
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import annotated_types
import yaml
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

__all__ = [
    "Lines",
    "Problem",
    "describe",
    "line_of",
    "load_yaml_lines",
    "skip_pydantic_plugins",
    "yaml_lines",
]

#: pydantic's plugin loader, asked for plugins the first time a model is built.
PYDANTIC_PLUGIN_LOADER = "pydantic.plugin._loader"


def _no_plugins() -> Iterable[Any]:
    return ()


def skip_pydantic_plugins() -> None:
    """Tell pydantic it has no plugins before it builds its first model, without its loader.

    The loader imports ``importlib.metadata`` (with ``email``, ``zipfile``, ``csv``,
    ``tempfile``...) and reads the entry points of every installed distribution: about 1.5 MiB
    of an idle manager (issue 13) for plugins Rosey never uses. ``PYDANTIC_DISABLE_PLUGINS``
    skips the scan but not the import. A loader already imported (someone in this process uses
    pydantic plugins) is left as it is.
    """
    if PYDANTIC_PLUGIN_LOADER not in sys.modules:
        loader = types.ModuleType(PYDANTIC_PLUGIN_LOADER, "Rosey: no pydantic plugins.")
        vars(loader)["get_plugins"] = _no_plugins
        sys.modules[PYDANTIC_PLUGIN_LOADER] = loader


skip_pydantic_plugins()

#: Path of a key or list item (``("plugins", "dice", "limits")``, ``("admins", 1)``) → line.
Lines = Mapping[tuple[str | int, ...], int]


class Problem(NamedTuple):
    """One problem: the dotted field (``""`` for the whole file), what is wrong, the line."""

    field: str
    problem: str
    line: int | None = None


class YamlFileError(Exception):
    """The file cannot be read or is not YAML: ``problem`` says why and where."""

    def __init__(self, problem: str) -> None:
        self.problem = problem
        super().__init__(problem)


def load_yaml_lines(path: Path) -> tuple[Any, Lines]:
    """The file's data and the line of each key and item; ``YamlFileError`` if unreadable."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise YamlFileError(f"cannot be read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise YamlFileError(f"is not UTF-8 text (byte {exc.start})") from None
    return yaml_lines(text)


def yaml_lines(text: str) -> tuple[Any, Lines]:
    """Parse YAML text (safe loader): its data and the line of each key and list item."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise YamlFileError(f"is not valid YAML{where}: {problem}") from None
    finally:
        loader.dispose()
    lines: dict[tuple[str | int, ...], int] = {}
    if node is not None:
        _walk(node, (), lines, depth=0)
    return data, lines


#: The most keys and items whose lines are kept: far more than any config or manifest has,
#: far fewer than a "billion laughs" file (ten aliases of ten aliases...) expands to.
MAX_LINES = 100_000


def _walk(
    node: yaml.Node,
    path: tuple[str | int, ...],
    lines: dict[tuple[str | int, ...], int],
    depth: int,
) -> None:
    # An alias is the node it names, walked again under each path that reaches it: bounded
    # by depth and by MAX_LINES, not by the file's size.
    if depth > 64 or len(lines) >= MAX_LINES:  # a config is never this deep
        return
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and len(lines) < MAX_LINES:
                here = (*path, str(key.value))
                lines.setdefault(here, key.start_mark.line + 1)
                _walk(value, here, lines, depth + 1)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            if len(lines) >= MAX_LINES:
                return
            here = (*path, index)
            lines.setdefault(here, item.start_mark.line + 1)
            _walk(item, here, lines, depth + 1)


def line_of(lines: Lines, loc: tuple[str | int, ...]) -> int | None:
    """The line of ``loc``, or of the nearest enclosing key the file has (a missing key: its
    mapping's line)."""
    for end in range(len(loc), 0, -1):
        line = lines.get(loc[:end])
        if line is not None:
            return line
    return None


def describe(
    error: ValidationError,
    root: type[BaseModel],
    lines: Lines | None = None,
    patterns: Mapping[str, str] | None = None,
) -> list[Problem]:
    """Every problem of ``error`` in words a person can act on, with its line when known.

    ``patterns`` names what a regular expression allows (``"a semantic version such as
    1.0.0"``); ``root`` is the model validated, to list allowed keys and ranges.
    """
    problems: list[Problem] = []
    for item in error.errors():
        loc = tuple(p for p in item["loc"] if p != "[key]")
        field = ".".join(str(part) for part in loc) or "(top level)"
        problems.append(
            Problem(field, _wording(item, root, patterns or {}), line_of(lines or {}, loc))
        )
    # In the file's order: fix them top to bottom (those without a line last).
    return sorted(problems, key=lambda p: (p.line is None, p.line or 0))


_TYPES = {
    "int_parsing": "a whole number",
    "int_type": "a whole number",
    "int_from_float": "a whole number",
    "float_parsing": "a number",
    "float_type": "a number",
    "bool_parsing": "true or false",
    "bool_type": "true or false",
    "string_type": "a text (put it in quotes)",
    "list_type": "a list, e.g. [a, b]",
    "tuple_type": "a list, e.g. [a, b]",
    "dict_type": "a mapping of keys to values",
    "model_type": "a mapping of keys to values",
    "model_attributes_type": "a mapping of keys to values",
}
_BOUNDS = ("greater_than", "greater_than_equal", "less_than", "less_than_equal")


def _wording(item: Any, root: type[BaseModel], patterns: Mapping[str, str]) -> str:
    kind = item["type"]
    ctx = item.get("ctx") or {}
    got = item.get("input")
    if kind == "extra_forbidden":
        return "unknown key; allowed keys here: " + allowed_keys(root, item["loc"])
    if kind == "missing":
        return "is required"
    if kind == "string_pattern_mismatch":
        pattern = str(ctx.get("pattern", ""))
        wanted = patterns.get(pattern, f"a value matching {pattern}")
        return f"{got!r} is not allowed; expected {wanted}"
    if kind == "literal_error":
        return f"{got!r} is not allowed; expected {ctx.get('expected')}"
    if kind == "value_error":
        # Our own validators write the whole sentence; pydantic only prefixes it.
        return str(item["msg"]).removeprefix("Value error, ")
    if kind in _TYPES or kind in _BOUNDS:
        info = field_info(root, item["loc"])
        wanted = _TYPES.get(kind) or _number_kind(info)
        pattern = _pattern(info) or ""
        if kind == "string_type" and pattern in patterns:
            wanted = f"{patterns[pattern]} (a text: put it in quotes)"
        span = _range(info) or _range_of_ctx(ctx)
        return f"{got!r} is not allowed; expected {wanted}{span}"
    if kind in ("too_short", "too_long"):
        low, high = ctx.get("min_length"), ctx.get("max_length")
        size = len(got) if hasattr(got, "__len__") else "?"
        bound = f"at least {low}" if kind == "too_short" else f"at most {high}"
        return f"has {size} item(s) or characters; allowed: {bound}"
    return f"{item['msg']} (got {got!r})"


def _pattern(info: FieldInfo | None) -> str | None:
    for meta in info.metadata if info is not None else ():
        pattern = getattr(meta, "pattern", None)
        if isinstance(pattern, str):
            return pattern
    return None


def _number_kind(info: FieldInfo | None) -> str:
    annotation = info.annotation if info is not None else None
    return "a whole number" if annotation is int else "a number"


def _range(info: FieldInfo | None) -> str:
    """`` from 16 to 1048576`` (or `` above 0``...) from the field's declared bounds."""
    if info is None:
        return ""
    low = high = ""
    for meta in info.metadata:
        if isinstance(meta, annotated_types.Ge):
            low = f"at least {_num(meta.ge)}"
        elif isinstance(meta, annotated_types.Gt):
            low = f"above {_num(meta.gt)}"
        elif isinstance(meta, annotated_types.Le):
            high = f"at most {_num(meta.le)}"
        elif isinstance(meta, annotated_types.Lt):
            high = f"below {_num(meta.lt)}"
    if low.startswith("at least") and high.startswith("at most"):
        return f" from {low.removeprefix('at least ')} to {high.removeprefix('at most ')}"
    both = " and ".join(part for part in (low, high) if part)
    return f" {both}" if both else ""


def _range_of_ctx(ctx: Mapping[str, Any]) -> str:
    words = {"ge": "at least", "gt": "above", "le": "at most", "lt": "below"}
    parts = [f"{words[key]} {_num(value)}" for key, value in ctx.items() if key in words]
    return f" {' and '.join(parts)}" if parts else ""


def _num(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def _walk_model(
    root: type[BaseModel], loc: tuple[int | str, ...]
) -> tuple[type[BaseModel], FieldInfo | None, int]:
    """Follow ``loc`` through models (and dicts of models): the last model reached, the field
    info of ``loc[-1]`` if it belongs to that model, and how many parts were consumed."""
    model: type[BaseModel] = root
    parts = [p for p in loc if p != "[key]"]
    used = 0
    info: FieldInfo | None = None
    while used < len(parts):
        info = model.model_fields.get(str(parts[used]))
        if info is None:
            return model, None, used
        used += 1
        inner = _model_of(info.annotation)
        if inner is None or used == len(parts):
            return model, info, used
        origin = getattr(info.annotation, "__origin__", None)
        if origin is dict or origin is list:
            used += 1  # the key or index
        model, info = inner, None
    return model, info, used


def field_info(root: type[BaseModel], loc: tuple[int | str, ...]) -> FieldInfo | None:
    """The declared field at ``loc`` (for its type and bounds), or None."""
    _, info, used = _walk_model(root, loc)
    parts = [p for p in loc if p != "[key]"]
    return info if used == len(parts) else None


def allowed_keys(root: type[BaseModel], loc: tuple[int | str, ...]) -> str:
    """The keys of the model that holds the field at ``loc`` (walking dicts of models too)."""
    model, _, _ = _walk_model(root, (*loc[:-1], ""))
    return ", ".join(model.model_fields)
