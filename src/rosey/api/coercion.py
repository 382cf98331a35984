"""How pydantic (2.x) reads a value as ``str``, ``int`` or ``bool``, strictly or leniently.

The request models (``rosey.api.requests``) replaced pydantic models whose error texts the faces
quote; these functions give the same values and the same error types and words. ``strict``
(JSON bodies) takes JSON types as they are: a ``str`` for a str, an ``int`` but not a ``bool``
for an int, a ``bool`` for a bool. Lax (chat and CLI words, which are strings) reads what
pydantic's lax mode reads: ``" 20 "``, ``"+1_000"`` and ``"20.0"`` are ints, ``"yes"``,
``"off"``, ``1`` and ``0.0`` are bools, bytes are decoded. ``Fail`` carries pydantic's error
type and message. Pure functions, no I/O; ``tests/unit/test_api_requests.py`` compares them
with pydantic on generated input.
"""

from __future__ import annotations

import math
import re
from typing import Any, NoReturn

__all__ = ["Fail", "as_bool", "as_int", "as_str", "fail"]

#: pydantic's limit on the digits of an integer parsed from a string (CPython's default).
MAX_INT_DIGITS = 4300
#: What a lax integer string may be padded with: Unicode White_Space (Rust's ``str::trim``,
#: which pydantic uses; Python's ``str.strip`` also strips U+001C..U+001F).
_WHITE_SPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
_WHITE_SPACE += "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
#: How a JSON integer other than 0 starts (ASCII digits only).
_JSON_DIGITS = re.compile(r"-?([1-9][0-9]*)")
_TRUE = frozenset({"1", "t", "y", "on", "yes", "true"})
_FALSE = frozenset({"0", "f", "n", "no", "off", "false"})
_I64 = 2**63


class Fail(Exception):
    """A value that does not fit: ``kind`` is pydantic's error type, ``message`` its words."""

    def __init__(self, kind: str, message: str) -> None:
        self.kind = kind
        self.message = message


def fail(kind: str, message: str) -> NoReturn:
    """Refuse the value being read (``Fail``)."""
    raise Fail(kind, message)


def as_str(value: Any, *, strict: bool) -> str:
    """``value`` as a str: a str; lax, also UTF-8 bytes (nothing else: not a number)."""
    if isinstance(value, str):
        return str(value)
    if not strict and isinstance(value, bytes | bytearray):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            fail(
                "string_unicode",
                "Input should be a valid string, unable to parse raw data as a unicode string",
            )
    fail("string_type", "Input should be a valid string")


def as_bool(value: Any, *, strict: bool) -> bool:
    """``value`` as a bool: a bool; lax, also the words (any ASCII case, no padding) ``1 t y
    on yes true`` and ``0 f n off no false``, and the numbers 0 and 1."""
    if isinstance(value, bool):
        return value
    if not strict:
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if isinstance(value, str):
            word = value.lower() if value.isascii() else value
            if word in _TRUE:
                return True
            if word in _FALSE:
                return False
            _bool_parsing()
        if isinstance(value, int) and -_I64 <= value < _I64:
            return _int_as_bool(value)
        if isinstance(value, float) and value.is_integer() and -_I64 < value < _I64:
            return _int_as_bool(int(value))
    fail("bool_type", "Input should be a valid boolean")


def _int_as_bool(value: int) -> bool:
    if value in (0, 1):
        return value == 1
    _bool_parsing()


def _bool_parsing() -> NoReturn:
    fail("bool_parsing", "Input should be a valid boolean, unable to interpret input")


def as_int(value: Any, *, strict: bool) -> int:
    """``value`` as an int: an int but not a bool; lax, also a bool, a float without a
    fraction (within 64 bits) and an integer string (``_str_as_int``)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return int(value)
    if not strict:
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, float):
            return _float_as_int(value)
        if isinstance(value, bytes):
            try:
                value = value.decode("utf-8")
            except UnicodeDecodeError:
                _int_parsing()
        if isinstance(value, str):
            return _str_as_int(value)
    fail("int_type", "Input should be a valid integer")


def _float_as_int(value: float) -> int:
    if not math.isfinite(value):
        fail("finite_number", "Input should be a finite number")
    if not value.is_integer():
        fail(
            "int_from_float", "Input should be a valid integer, got a number with a fractional part"
        )
    if not -_I64 < value < _I64:
        _int_parsing_size()
    return int(value)


def _str_as_int(text: str) -> int:
    """An integer string as pydantic's lax mode reads it (``str_as_int`` of pydantic-core).

    Twice: the text as it is, as one JSON integer (whose run of more than ``MAX_INT_DIGITS``
    digits is "too large", whatever follows it); failing that, a cleaned copy (white space,
    a ``+``, leading zeros and a ``.000`` tail dropped, ``_`` between digits removed), where
    every failure, length too, is "unable to parse".
    """
    first, too_long = _json_int(text)
    if too_long:
        _int_parsing_size()
    if first is not None:
        return first
    cleaned = _clean_int_str(text)
    second = None if cleaned is None else _json_int(cleaned)[0]
    if second is None:
        _int_parsing()
    return second


def _json_int(text: str) -> tuple[int | None, bool]:
    """``(value, too_long)`` of ``text`` read as exactly one JSON integer (jiter's reading:
    no ``+``, no leading zero, nothing after; a digit run beyond the limit stops it first)."""
    if text in ("0", "-0"):
        return 0, False
    digits = _JSON_DIGITS.match(text)
    if digits is None:
        return None, False
    if len(digits.group(1)) > MAX_INT_DIGITS:
        return None, True
    if digits.end() != len(text):
        return None, False
    return int(text), False


def _clean_int_str(original: str) -> str | None:
    """What pydantic parses again when ``original`` is not a plain JSON integer; ``None`` when
    cleaning changes nothing (then it is not a number)."""
    text = original.strip(_WHITE_SPACE)
    if text.startswith("+"):
        if text.startswith("+-"):
            return None
        text = text[1:]
    negative = text.startswith("-")
    if negative:
        if text.startswith(("--", "-+")):
            return None
        text = text[1:]
    stripped = _strip_leading_zeros(text)
    if stripped is None:
        return None
    text = stripped
    dot = text.find(".")
    if dot >= 0:
        decimals = text[dot + 1 :]
        if decimals and not decimals.strip("0"):
            text = text[:dot]
    sign = "-" if negative else ""
    if "_" in text and not (text.startswith("_") or text.endswith("_") or "__" in text):
        return sign + text.replace("_", "")
    if len(text) == len(original):
        return None
    return sign + text


def _strip_leading_zeros(text: str) -> str | None:
    """``text`` without its leading zeros (and ``_`` among them), keeping the last zero of an
    all-zero number and the one before a ``.``; ``None`` if it cannot start a number."""
    if not text or text[0] not in "0123456789-":
        return None
    if text[0] != "0":
        return text
    for i, char in enumerate(text[1:], start=1):
        if char in "123456789-":
            return text[i:]
        if char == ".":
            return text[i - 1 :]
        if char not in "0_":
            return None
    return text[-1]


def _int_parsing() -> NoReturn:
    fail("int_parsing", "Input should be a valid integer, unable to parse string as an integer")


def _int_parsing_size() -> NoReturn:
    fail("int_parsing_size", "Unable to parse input string as an integer, exceeded maximum size")
