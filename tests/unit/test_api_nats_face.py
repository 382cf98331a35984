"""The NATS face's envelope, without a bus: any bytes on any subject give ok/error, never raise."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rosey.api.nats_face import answer, error_reply, parse_body
from rosey.errors import BadRequest

CODES = {"not_found", "invalid_state", "dependency", "forbidden", "bad_request", "internal"}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=10,
)


class Untouchable:
    """Stands where the manager would: a malformed request must never reach it."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the manager was used ({name}) for a malformed request")


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", {}),
        (b"  \n", {}),
        (b"null", {}),
        (b"{}", {}),
        (b'{"plugin": "dice"}', {"plugin": "dice"}),
    ],
)
def test_bodies_that_parse(data: bytes, expected: dict[str, Any]) -> None:
    assert parse_body("rosey.manager.status", data) == expected


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"{", "body is not UTF-8 JSON"),
        (b"\xff", "body is not UTF-8 JSON"),
        (b"[]", "the body must be a JSON object, got list"),
        (b'"dice"', "the body must be a JSON object, got str"),
        (b"5", "the body must be a JSON object, got int"),
    ],
)
def test_bodies_that_do_not(data: bytes, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        parse_body("rosey.manager.status", data)


def test_error_reply_keeps_to_the_design_codes() -> None:
    assert error_reply("not_found", "x") == {
        "ok": False,
        "error": {"code": "not_found", "message": "x"},
    }
    assert error_reply("made_up", "x")["error"]["code"] == "internal"


@settings(max_examples=300, deadline=None, database=None)
@given(
    action=st.sampled_from(["list", "status", "start", "stop", "logs", "help", "nope", "x" * 100]),
    data=st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()),
)
def test_any_payload_gets_an_envelope(action: str, data: bytes) -> None:
    reply = asyncio.run(answer(Untouchable(), f"rosey.manager.{action}", data))  # type: ignore[arg-type]
    assert isinstance(reply["ok"], bool)
    if not reply["ok"]:
        assert reply["error"]["code"] in CODES
        assert isinstance(reply["error"]["message"], str)
        # Only a well-formed request may get as far as the manager (here: "internal").
        if reply["error"]["code"] == "internal":
            assert "the manager was used" in reply["error"]["message"]
    json.dumps(reply)
