"""rosey.protocol.control: the control channel's messages, both directions, and what a
confused or hostile plugin can put on its end."""

from __future__ import annotations

import json

import pytest

from rosey.protocol import control
from rosey.protocol.control import ControlMessage


@pytest.mark.parametrize(
    "message",
    [
        control.ready(4242),
        control.failed("on_start failed: RuntimeError: boom"),
        control.confined(["pidns", "uid", "landlock", "missing:seccomp"]),
        control.stop(),
        control.bootstrap(
            {
                "name": "echo",
                "plugin_dir": "/p/echo",
                "entrypoint": "echo:Echo",
                "data_dir": "/d/echo",
                "nats_url": "nats://127.0.0.1:4222",
                "user": "plugin_echo",
                "password": "s3cret",
                "config": {"greeting": "hi"},
                "isolation": {"pid_namespace": True},
            }
        ),
    ],
)
def test_every_message_survives_the_wire(message: ControlMessage) -> None:
    line = control.encode(message)
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    assert control.decode(line) == message


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        # A reason that is not text is shown as text (it is only ever displayed).
        (b'{"type": "failed", "error": 42}', control.failed("42")),
        (b'{"type": "failed"}', control.failed("None")),
        # Layers are names: whatever a list holds is made text.
        (b'{"type": "confined", "layers": ["uid", 7]}', control.confined(["uid", "7"])),
        # A pid that is not an int is dropped, the readiness kept.
        (b'{"type": "ready", "pid": "x"}', {"type": "ready"}),
        (b'{"type": "ready", "pid": true}', {"type": "ready"}),
        (b'{"type": "stop", "extra": 1}', control.stop()),
    ],
)
def test_lenient_where_the_old_channel_was(line: bytes, expected: ControlMessage) -> None:
    assert control.decode(line) == expected


@pytest.mark.parametrize(
    "line",
    [
        b"not json\n",
        b"[1, 2, 3]\n",
        b'"ready"\n',
        b"{}\n",
        b'{"type": "hello"}\n',
        b'{"type": "confined", "layers": "uid"}\n',
        b'{"type": "bootstrap", "name": "x"}\n',
        b"\xff\xfe\n",
        b"[" * 100_000 + b"]" * 100_000,
    ],
)
def test_anything_else_is_invalid(line: bytes) -> None:
    message = control.decode(line)
    assert message["type"] == "invalid"


def test_the_invalid_note_is_bounded_and_escaped() -> None:
    """A plugin can write its end of the channel: what the manager keeps of a bad line must be
    safe to log (no escape sequences, no newline to forge a log line) and short."""
    hostile = b"\x1b]52;c;cGF3bmVk\x07\x1b[2J" + b"A" * 10_000 + b"\nforged: line\n"
    message = control.decode(hostile)
    assert message["type"] == "invalid"
    raw = message["raw"]
    assert "\x1b" not in raw
    assert "\n" not in raw
    assert "\x07" not in raw
    assert len(raw) <= control.INVALID_NOTE_CHARS * 4  # escaped characters are a few long


def test_encode_is_one_json_object() -> None:
    assert json.loads(control.encode(control.confined(["uid"]))) == {
        "type": "confined",
        "layers": ["uid"],
    }
