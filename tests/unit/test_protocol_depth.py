"""JSON nesting is bounded before ``json.loads`` (``rosey.protocol.depth``, ``wire.decode``).

Regression for issue 10: a plugin's reply of 100 000 nested lists made ``json.loads`` raise
``RecursionError`` in the router's task; no reply, no outcome.
"""

from __future__ import annotations

import json

import pytest

from rosey.errors import DecodeError
from rosey.protocol import wire
from rosey.protocol.depth import MAX_DEPTH, too_deep


def nested(depth: int, open_: str = "[", close: str = "]") -> bytes:
    return (open_ * depth + close * depth).encode()


@pytest.mark.parametrize(
    ("data", "deep"),
    [
        (b'{"ok":true,"text":"4","data":null,"error":null}', False),
        (nested(MAX_DEPTH), False),
        (nested(MAX_DEPTH + 1), True),
        (nested(100_000), True),
        (b'{"a":' * 100 + b"1" + b"}" * 100, True),
        # Wide is not deep: many brackets side by side.
        (json.dumps([[i, {"k": [i]}] for i in range(5000)]).encode(), False),
        # Brackets inside strings do not nest, escaped quotes do not end a string.
        (json.dumps(["[" * 5000, '\\"[[[' * 100, "{" * 100]).encode(), False),
        # ... nor can strings hide real nesting.
        (b'["]"' + b',["]"' * 200 + b"]" * 201, True),
        (b"[" + b'"[",' * 300 + nested(200) + b"]", True),
        (b"", False),
        (b"[" * 1000, True),  # unclosed: too deep before it is malformed
        (b"]" * 1000, False),  # nothing to peel: json.loads says it is not JSON
    ],
)
def test_too_deep(data: bytes, deep: bool) -> None:
    assert too_deep(data) is deep


def test_the_bound_is_between_the_limit_and_twice_it() -> None:
    # An object around a list peels in one pass: this body of 2 * MAX_DEPTH levels passes ...
    wrapped = '{"k":[' * MAX_DEPTH + "1" + "]}" * MAX_DEPTH
    assert too_deep(wrapped.encode()) is False
    assert json.loads(wrapped)  # ... and json.loads takes it in its stride.
    # A list around an object does not: one level per pass.
    assert too_deep(('[{"k":' * MAX_DEPTH + "1" + "}]" * MAX_DEPTH).encode())
    assert not too_deep(nested(MAX_DEPTH))
    assert too_deep(nested(MAX_DEPTH + 1))


def test_decode_refuses_deep_bodies_with_a_decode_error() -> None:
    with pytest.raises(DecodeError, match=f"nests deeper than {MAX_DEPTH} levels"):
        wire.parse_command_reply("rosey.commands.x.execute", nested(100_000))
    assert wire.decode("s", nested(10)) == json.loads(nested(10))
