"""The control channel between the manager and one plugin process: its messages, typed.

An inherited socket, one JSON object a line (``rosey.sdk.runner`` is the plugin's end,
``rosey.sandbox.plugin_process.PluginProcess`` the manager's):

    manager → plugin   bootstrap   name, entrypoint, folders, bus URL, credentials, the layers
                                   the runner puts itself under (``isolation``, ``sandbox``,
                                   ``seccomp``); the channel is the only way secrets travel
    plugin → manager   confined    the layers the runner put itself under, sent once, before
                                   any plugin code ran
    plugin → manager   ready       subscribed and ``on_start`` returned (with the plugin's pid)
    plugin → manager   failed      could not start, the reason in words
    manager → plugin   stop        polite stop request (SIGTERM does the same); ``replaced``
                                   when a reload's new instance took over

Each message is a ``TypedDict`` (the JSON object as it is on the wire, so a reader can still
ask ``message["type"]``), built by the function named after it and turned into a line by
``encode``. ``decode`` checks a line's shape: anything else, from a confused or hostile plugin
(it can reach its end of the channel once its code runs), becomes an ``InvalidMessage`` whose
``raw`` is a bounded, escaped note of what arrived, safe to log.

Standard library only: the plugin process imports this before the SDK.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal, NotRequired, TypedDict

from rosey.protocol.text import clean

__all__ = [
    "BootstrapMessage",
    "ConfinedMessage",
    "ControlMessage",
    "FailedMessage",
    "InvalidMessage",
    "ReadyMessage",
    "StopMessage",
    "bootstrap",
    "confined",
    "decode",
    "encode",
    "failed",
    "invalid",
    "ready",
    "stop",
]

#: How much of an invalid line is kept in its note (characters, before escaping).
INVALID_NOTE_CHARS = 200


class BootstrapMessage(TypedDict):
    """Manager → plugin, first and once: everything the runner needs (``spawnspec`` fills it)."""

    type: Literal["bootstrap"]
    name: str
    plugin_dir: str
    entrypoint: str
    data_dir: str
    nats_url: str
    user: NotRequired[str | None]
    password: NotRequired[str | None]
    inbox_prefix: NotRequired[str | None]
    config: NotRequired[dict[str, Any]]
    stop_timeout_s: NotRequired[float]
    connect_timeout: NotRequired[float]
    #: Namespaces, the plugin's own uid, the process rlimit (``rosey.sandbox.namespaces``).
    isolation: NotRequired[dict[str, Any]]
    #: Landlock rules (``rosey.sandbox.landlock``).
    sandbox: NotRequired[dict[str, Any]]
    #: The seccomp filter (``rosey.sandbox.seccomp``).
    seccomp: NotRequired[dict[str, Any]]


class ConfinedMessage(TypedDict):
    """Plugin → manager, before plugin code: the enforcement layers the runner applied."""

    type: Literal["confined"]
    layers: list[str]


class ReadyMessage(TypedDict):
    """Plugin → manager: subscribed, ``on_start`` returned."""

    type: Literal["ready"]
    pid: NotRequired[int]


class FailedMessage(TypedDict):
    """Plugin → manager: the plugin could not start; ``error`` says why."""

    type: Literal["failed"]
    error: str


class StopMessage(TypedDict):
    """Manager → plugin: stop politely (run ``on_stop``, close the bus, exit 0).

    ``replaced``: a reload's new instance serves already; finish what was delivered first.
    """

    type: Literal["stop"]
    replaced: NotRequired[bool]


class InvalidMessage(TypedDict):
    """What ``decode`` makes of a line that is not one of the messages above."""

    type: Literal["invalid"]
    #: A bounded, escaped (one-line) note of what arrived.
    raw: str


ControlMessage = (
    BootstrapMessage | ConfinedMessage | ReadyMessage | FailedMessage | StopMessage | InvalidMessage
)

_BOOTSTRAP_REQUIRED = ("name", "plugin_dir", "entrypoint", "data_dir", "nats_url")


def bootstrap(settings: Mapping[str, Any]) -> BootstrapMessage:
    """The bootstrap message carrying ``settings`` (the fields of ``BootstrapMessage``)."""
    message: dict[str, Any] = {"type": "bootstrap", **settings}
    return message  # type: ignore[return-value]  # its fields are the spawn spec's to fill


def confined(layers: list[str]) -> ConfinedMessage:
    return {"type": "confined", "layers": list(layers)}


def ready(pid: int) -> ReadyMessage:
    return {"type": "ready", "pid": pid}


def failed(error: str) -> FailedMessage:
    return {"type": "failed", "error": error}


def stop(*, replaced: bool = False) -> StopMessage:
    return {"type": "stop", "replaced": True} if replaced else {"type": "stop"}


def invalid(raw: bytes | str) -> InvalidMessage:
    """An invalid message noting ``raw`` (bounded, escape sequences and newlines escaped)."""
    text = raw if isinstance(raw, str) else raw[: INVALID_NOTE_CHARS * 4].decode("utf-8", "replace")
    return {"type": "invalid", "raw": clean(text[:INVALID_NOTE_CHARS], one_line=True)}


def encode(message: ControlMessage) -> bytes:
    """One line of JSON, newline included."""
    return json.dumps(message).encode() + b"\n"


def decode(line: bytes) -> ControlMessage:
    """The message on ``line``; an ``InvalidMessage`` when it is not JSON or not a known shape.

    The shape checks are what the two ends rely on: ``confined`` carries a list (its entries
    are made strings), ``failed`` carries a reason (made a string, as it is only shown),
    ``bootstrap`` carries the fields the runner cannot start without.
    """
    try:
        data = json.loads(line)
    except (ValueError, RecursionError):  # JSONDecodeError, bad UTF-8, absurd nesting
        return invalid(line)
    if not isinstance(data, dict):
        return invalid(line)
    kind = data.get("type")
    if kind == "ready":
        pid = data.get("pid")
        return ready(pid) if isinstance(pid, int) and not isinstance(pid, bool) else {"type": kind}
    if kind == "failed":
        error = data.get("error")
        return failed(error if isinstance(error, str) else str(error))
    if kind == "confined":
        layers = data.get("layers")
        return (
            confined([str(layer) for layer in layers])
            if isinstance(layers, list)
            else invalid(line)
        )
    if kind == "stop":
        return stop(replaced=data.get("replaced") is True)
    if kind == "bootstrap":
        if all(isinstance(data.get(key), str) for key in _BOOTSTRAP_REQUIRED):
            return bootstrap({key: value for key, value in data.items() if key != "type"})
        return invalid(line)
    return invalid(line)
