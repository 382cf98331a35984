"""Records: the validated config and manifests as the running bot holds them, without pydantic.

The bot's config and every plugin's manifest are checked by pydantic models (``*_schema``
modules), in a short-lived checker process (``rosey.checker``): the running bot never imports
pydantic (~10 MiB of its resident memory: the extension, its heap and every built validator)
and never parses a plugin's YAML itself. What it keeps are records: plain immutable values with
the same fields, defaults and read-only accessors the models offer (``model_fields``,
``model_fields_set``, ``model_dump``, ``model_copy``), so code that reads them does not care
which process checked them. ``Record.model_validate`` checks in-process through the record's
model, for the command line and tests.

``encode``/``decode`` carry records between the processes as JSON: every value is tagged with
what it was (a record of which class, a path, a tuple), so a record decodes to exactly what was
encoded. Only this project's record classes decode (``register``): the checker's output names a
class, never code.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Self, dataclass_transform

__all__ = ["Record", "decode", "encode", "register"]

#: Every record class by name, for ``decode``.
_CLASSES: dict[str, type[Record]] = {}


def register(cls: type[Record]) -> type[Record]:
    """A record class ``decode`` may build (its name must be unique)."""
    known = _CLASSES.setdefault(cls.__name__, cls)
    if known is not cls:
        raise TypeError(f"two record classes named {cls.__name__!r}")
    return cls


class _Missing:
    def __repr__(self) -> str:
        return "<required>"


#: The default of a field the record cannot be made without.
REQUIRED: Any = _Missing()


@dataclass_transform(kw_only_default=True, frozen_default=True)
class Record:
    """An immutable value with declared fields: ``name: type = default`` in the class body.

    A mutable default (a list or dict) is copied for each record, as pydantic copies it.
    ``__schema__`` names the pydantic model that checks it (``"module:Class"``), imported
    only by ``model_validate``.
    """

    __schema__: ClassVar[str] = ""
    #: The field that holds the keys the model takes beyond its own (``extra="allow"``).
    __extra__: ClassVar[str | None] = None
    #: Field name → default (``REQUIRED`` if none), in declaration order.
    model_fields: ClassVar[dict[str, Any]] = {}
    __slots__ = ("_values", "model_fields_set")

    _values: dict[str, Any]
    #: The fields given when the record was made (the others hold their defaults).
    model_fields_set: frozenset[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        fields: dict[str, Any] = {}
        for base in reversed(cls.__mro__[1:]):
            fields.update(getattr(base, "model_fields", {}))
        for name in inspect.get_annotations(cls):
            if name.startswith("_") or name in ("model_fields", "model_fields_set"):
                continue
            fields[name] = cls.__dict__.get(name, REQUIRED)
        # The defaults move off the class: attribute reads go to ``__getattr__``'s values.
        for name in fields:
            if name in cls.__dict__:
                delattr(cls, name)
        cls.model_fields = fields
        register(cls)

    def __init__(self, **values: Any) -> None:
        unknown = [name for name in values if name not in self.model_fields]
        if unknown:
            raise TypeError(f"{type(self).__name__} has no field {unknown[0]!r}")
        filled: dict[str, Any] = {}
        for name, default in self.model_fields.items():
            if name in values:
                filled[name] = values[name]
            elif default is REQUIRED:
                raise TypeError(f"{type(self).__name__} needs {name!r}")
            else:
                filled[name] = _fresh(default)
        object.__setattr__(self, "_values", filled)
        object.__setattr__(self, "model_fields_set", frozenset(values))

    @classmethod
    def made(cls, values: Mapping[str, Any], given: Iterable[str]) -> Self:
        """A record of ``values`` whose set fields are ``given`` (a checked model's, or those
        a record carried across processes), not the keys of ``values``."""
        record = cls(**values)
        object.__setattr__(record, "model_fields_set", frozenset(given))
        return record

    def __getattr__(self, name: str) -> Any:
        try:
            return object.__getattribute__(self, "_values")[name]
        except KeyError:
            kind = type(self).__name__
            raise AttributeError(f"{kind!r} object has no attribute {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._values == other._values

    def __hash__(self) -> int:
        return hash((type(self), tuple(self._values.values())))

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self._values.items())
        return f"{type(self).__name__}({shown})"

    def __getstate__(self) -> dict[str, Any]:
        return {"values": self._values, "set": self.model_fields_set}

    def __setstate__(self, state: dict[str, Any]) -> None:
        object.__setattr__(self, "_values", state["values"])
        object.__setattr__(self, "model_fields_set", state["set"])

    def model_dump(self, *, exclude_none: bool = False) -> dict[str, Any]:
        """The fields as a dict, records in it as dicts too (pydantic's python-mode dump)."""
        return {
            name: _dump(value, exclude_none)
            for name, value in self._values.items()
            if not (exclude_none and value is None)
        }

    def model_copy(self, *, update: Mapping[str, Any] | None = None) -> Self:
        """A copy with ``update``'s fields replaced (not checked, as pydantic's copy)."""
        copy = object.__new__(type(self))
        object.__setattr__(copy, "_values", {**self._values, **(update or {})})
        object.__setattr__(copy, "model_fields_set", self.model_fields_set | set(update or ()))
        return copy

    @classmethod
    def model_validate(cls, data: Any) -> Self:
        """Check ``data`` with this record's pydantic model, in this process (imports pydantic;
        raises its ``ValidationError``). The running bot uses ``rosey.checker`` instead.

        Records in ``data`` count as the fields they were given, as a model instance would.
        """
        module, _, name = cls.__schema__.partition(":")
        model = getattr(importlib.import_module(module), name)
        record = to_record(model.model_validate(_given(data)))
        if not isinstance(record, cls):
            raise TypeError(f"{cls.__schema__} makes {type(record).__name__}, not {cls.__name__}")
        return record


def _given(data: Any) -> Any:
    """``data`` with each record in it as the dict of the fields it was given.

    Records sit in a field, or in a dict or list a field holds, never deeper: nothing below
    that is visited, so a plugin's ``config`` (anything YAML can say, aliases included) is
    never walked.
    """
    if isinstance(data, Record):
        given = {name: _one_level(data._values[name], _given) for name in data.model_fields_set}
        if data.__extra__ is not None:
            given.update(given.pop(data.__extra__, {}))
        return given
    if isinstance(data, dict):  # a model's fields, as records hold theirs
        return {k: _one_level(v, _given) for k, v in data.items()}
    return data


def _one_level(value: Any, convert: Callable[[Any], Any]) -> Any:
    """``value`` converted if it is a record (or a model), else its items that are, one level
    down: how the models and records nest (``plugins: {name: PluginOverride}``)."""
    if _convertible(value):
        return convert(value)
    if isinstance(value, dict) and any(_convertible(v) for v in value.values()):
        return {k: convert(v) if _convertible(v) else v for k, v in value.items()}
    if isinstance(value, list | tuple) and any(_convertible(v) for v in value):
        return type(value)(convert(v) if _convertible(v) else v for v in value)
    return value


def _convertible(value: Any) -> bool:
    return isinstance(value, Record) or hasattr(type(value), "__record__")


def _fresh(default: Any) -> Any:
    if isinstance(default, list):
        return list(default)
    if isinstance(default, dict):
        return dict(default)
    return default


def _dump(value: Any, exclude_none: bool) -> Any:
    if isinstance(value, Record):
        return value.model_dump(exclude_none=exclude_none)
    if isinstance(value, list):
        return [_dump(v, exclude_none) for v in value]
    if isinstance(value, tuple):
        return tuple(_dump(v, exclude_none) for v in value)
    if isinstance(value, dict):
        return {k: _dump(v, exclude_none) for k, v in value.items()}
    return value


def to_record(model: Any) -> Any:
    """A validated pydantic model as its record (the model's class names it in
    ``__record__``), with the models in its fields (one level into dicts and lists) as theirs."""
    record_class: type[Record] = type(model).__record__
    values = {
        name: _one_level(getattr(model, name), to_record) for name in type(model).model_fields
    }
    extra = record_class.__extra__
    if extra is not None:
        values[extra] = dict(model.model_extra or {})
    # pydantic counts the extra keys as set fields: here they are the one field's.
    given = set(model.model_fields_set) & set(record_class.model_fields)
    if extra is not None and values[extra]:
        given.add(extra)
    return record_class.made(values, given)


# --- JSON between the checker and the bot -------------------------------------------------------

_TAG = "@"


def encode(value: Any) -> Any:
    """``value`` as JSON data that ``decode`` turns back into an equal value.

    Records, paths, tuples and dicts are tagged (a dict's keys may be any JSON scalar: YAML
    allows them); str, int, float, bool, None and lists are themselves. Anything else (a YAML
    date, bytes, a set) is refused with ``TypeError``: ``decode`` could not rebuild it.
    """
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, Record):
        return {
            _TAG: "record",
            "class": type(value).__name__,
            "set": sorted(value.model_fields_set),
            "values": {k: encode(v) for k, v in value._values.items()},
        }
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, tuple):
        return {_TAG: "tuple", "items": [encode(v) for v in value]}
    if isinstance(value, dict):
        return {_TAG: "dict", "items": [[encode(k), encode(v)] for k, v in value.items()]}
    if isinstance(value, Path):
        return {_TAG: "path", "path": str(value)}
    raise TypeError(f"cannot carry a {type(value).__name__} between processes")


def decode(data: Any) -> Any:
    """The value ``encode`` made ``data`` from; ``ValueError`` if ``data`` is not such."""
    if data is None or isinstance(data, str | bool | int | float):
        return data
    if isinstance(data, list):
        return [decode(v) for v in data]
    if not isinstance(data, dict):
        raise ValueError(f"not an encoded value: {type(data).__name__}")
    tag = data.get(_TAG)
    if tag == "record":
        cls = _CLASSES.get(data.get("class", ""))
        if cls is None:
            raise ValueError(f"not a record class: {data.get('class')!r}")
        return cls.made({k: decode(v) for k, v in data["values"].items()}, data["set"])
    if tag == "tuple":
        return tuple(decode(v) for v in data["items"])
    if tag == "dict":
        return {decode(k): decode(v) for k, v in data["items"]}
    if tag == "path":
        return Path(data["path"])
    raise ValueError(f"not an encoded value: tag {tag!r}")
