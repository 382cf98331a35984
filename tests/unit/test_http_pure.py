"""The pure parts of the HTTP face: event ids and resume, SSE frames, the token check, the
status table, the metric families (read back with Prometheus' parser) and the OpenAPI text."""

from __future__ import annotations

import json

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from rosey.api.http.app import POST_ACTIONS, bearer, status_for, token_matches
from rosey.api.http.events import CLIENT_QUEUE, Broadcaster, Event, EventLog, frame
from rosey.api.http.metrics import CommandMetrics, PluginSample, families, sample_from_status
from rosey.api.http.openapi import STATUS_KEYS, build


def _log(appended: int, capacity: int = 3) -> EventLog:
    log = EventLog(capacity, boot="b00t")
    for n in range(appended):
        log.append("state", {"n": n + 1})
    return log


@pytest.mark.parametrize(
    ("appended", "last_id", "gap", "numbers"),
    [
        (3, None, False, []),  # a new client starts from now
        (3, "", False, []),
        (3, "b00t-3", False, []),  # up to date
        (3, "b00t-1", False, [2, 3]),
        (3, "b00t-0", False, [1, 2, 3]),  # saw nothing, and nothing fell out
        (5, "b00t-2", False, [3, 4, 5]),  # exactly the oldest still kept is next
        (5, "b00t-1", True, [3, 4, 5]),  # event 2 fell out of the buffer
        (5, "b00t-9", True, []),  # from the future: not ours
        (5, "other-4", True, [3, 4, 5]),  # another run of the bot
        (5, "b00t-x", True, [3, 4, 5]),
        (5, "b00t-" + "9" * 40, True, [3, 4, 5]),
        (0, "b00t-0", False, []),
        (0, "other-7", True, []),
    ],
)
def test_a_client_gets_what_it_missed(
    appended: int, last_id: str | None, gap: bool, numbers: list[int]
) -> None:
    got_gap, events = _log(appended).since(last_id)
    assert (got_gap, [e.body["n"] for e in events]) == (gap, numbers)


def test_ids_name_the_run_and_count_up() -> None:
    log = EventLog(2, boot="abc")
    assert log.last_id == "abc-0"
    assert [log.append("state", {}).id for _ in range(3)] == ["abc-1", "abc-2", "abc-3"]
    with pytest.raises(ValueError, match="capacity"):
        EventLog(0)


def test_a_frame_is_one_event_whatever_the_body_holds() -> None:
    body = {"reason": "line one\nline two\r\n\ndata: forged", "x": "é"}
    text = frame(Event("b-7", "state", body)).decode()
    assert text.endswith("\n\n")
    assert text.count("\n\n") == 1  # no blank line inside: one event
    lines = text[:-2].split("\n")
    assert lines[:2] == ["id: b-7", "event: state"]
    assert len(lines) == 3
    assert json.loads(lines[2].removeprefix("data: ")) == body


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer  abc ", "abc"),
        ("Basic abc", None),
        ("abc", None),
        (None, None),
        ("Bearer", ""),
    ],
)
def test_bearer(header: str | None, token: str | None) -> None:
    assert bearer(header) == token


@pytest.mark.parametrize(
    ("given", "ok"),
    [("s3cret", True), ("s3cre", False), ("s3cret!", False), ("", False), (None, False),
     ("S3CRET", False), ("s3cr\u00e9t", False)],
)  # fmt: skip
def test_token_matches(given: str | None, ok: bool) -> None:
    assert token_matches(given, "s3cret") is ok


@pytest.mark.parametrize(
    ("code", "status"),
    [("bad_request", 400), ("unauthorized", 401), ("forbidden", 403), ("not_found", 404),
     ("invalid_state", 409), ("dependency", 409), ("rolled_back", 409), ("internal", 500),
     ("something_new", 500)],
)  # fmt: skip
def test_status_for(code: str, status: int) -> None:
    assert status_for(code) == status


class _Fixed(Collector):
    def __init__(self, metrics: list[object]) -> None:
        self.metrics = metrics

    def collect(self) -> list[object]:  # type: ignore[override]
        return self.metrics


def _exposed(samples: list[PluginSample], connected: bool = True) -> dict[str, float]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed(list(families(samples, broker_connected=connected, event_clients=2))))
    text = generate_latest(registry).decode()
    return {
        sample.name + json.dumps(sample.labels, sort_keys=True): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _status(**changes: object) -> dict[str, object]:
    status: dict[str, object] = {
        "name": "dice",
        "state": "running",
        "enabled": True,
        "uptime_seconds": 12.5,
        "restart_count": 2,
        "crash_count": 1,
        "error_rate": 0.25,
        "next_restart_in": None,
        "stats": {"running": True, "pid": 7, "cpu_percent": 3.0, "memory_mb": 2.0},
        "violations": 4,
        "kind": "plugin",
    }
    status.update(changes)
    return status


def test_metric_families_from_status() -> None:
    got = _exposed([sample_from_status(_status(), cpu_seconds=1.5, ping_s=0.002)])
    dice = '{"plugin": "dice"}'
    assert got["rosey_plugin_up" + dice] == 1
    assert got["rosey_plugin_restarts_total" + dice] == 2
    assert got["rosey_plugin_memory_bytes" + dice] == 2 * 1024 * 1024
    assert got["rosey_plugin_cpu_seconds_total" + dice] == 1.5
    assert got["rosey_security_violations_total" + dice] == 4
    assert got["rosey_plugin_health_ping_seconds" + dice] == 0.002
    assert got["rosey_plugin_backoff_in_progress" + dice] == 0
    assert got['rosey_plugin_state{"plugin": "dice", "state": "running"}'] == 1
    assert got['rosey_plugin_state{"plugin": "dice", "state": "crashed"}'] == 0
    assert got["rosey_broker_connected{}"] == 1
    assert got["rosey_http_event_clients{}"] == 2


def test_a_crashed_plugin_waiting_to_restart() -> None:
    crashed = _status(state="crashed", next_restart_in=4.0, stats={"running": False, "pid": None})
    got = _exposed([sample_from_status(crashed, cpu_seconds=None, ping_s=None)], connected=False)
    dice = '{"plugin": "dice"}'
    assert got["rosey_plugin_up" + dice] == 0
    assert got["rosey_plugin_backoff_in_progress" + dice] == 1
    assert got["rosey_plugin_backoff_seconds" + dice] == 4.0
    assert "rosey_plugin_cpu_seconds_total" + dice not in got  # no process: no sample
    assert "rosey_plugin_health_ping_seconds" + dice not in got
    assert got["rosey_broker_connected{}"] == 0


def test_labels_are_bounded() -> None:
    # A kind that is neither is shown as a plugin; states come from the fixed list only.
    odd = _status(kind="<script>", state="running")
    got = _exposed([sample_from_status(odd, cpu_seconds=0.0, ping_s=None)])
    assert 'rosey_plugin_info{"kind": "plugin", "plugin": "dice"}' in got
    assert not [key for key in got if "<script>" in key]
    states = {json.loads(k[k.index("{") :])["state"] for k in got if "rosey_plugin_state" in k}
    assert states == {"stopped", "starting", "running", "unhealthy", "crashed", "stopping",
                      "disabled"}  # fmt: skip


def test_the_openapi_names_exactly_the_actions_served() -> None:
    spec = build(list(POST_ACTIONS), "1.2.3")
    action = spec["paths"]["/api/plugins/{name}/{action}"]["post"]["parameters"][1]
    with_body = [a for a in POST_ACTIONS if f"/api/plugins/{{name}}/{a}" in spec["paths"]]
    assert with_body == ["install", "update", "remove"]  # a path each, with its own body
    assert action["schema"]["enum"] == [a for a in POST_ACTIONS if a not in with_body]
    assert set(POST_ACTIONS) >= {"start", "stop", "restart", "enable", "disable"}
    status = spec["components"]["schemas"]["Status"]
    assert status["required"] == list(STATUS_KEYS)
    assert set(STATUS_KEYS) <= set(status["properties"])
    json.dumps(spec)  # serialisable as served


def test_command_outcomes_only_for_known_plugins() -> None:
    registry = CollectorRegistry()
    commands = CommandMetrics(registry, known=lambda name: name == "dice")
    assert commands.observe("dice", "ok", {"duration_ms": 12.0}) is True
    assert commands.observe("dice", "error", {"duration_ms": "slow"}) is True  # counted, no time
    assert commands.observe("ghost", "ok", {"duration_ms": 1.0}) is False
    assert commands.observe("dice", "<b>", {}) is False
    text = generate_latest(registry).decode()
    assert 'rosey_commands_total{outcome="ok",plugin="dice"} 1.0' in text
    assert 'rosey_commands_total{outcome="error",plugin="dice"} 1.0' in text
    assert 'rosey_command_duration_seconds_count{plugin="dice"} 1.0' in text
    assert "ghost" not in text
    assert "<b>" not in text


def test_a_client_that_does_not_read_is_dropped_not_waited_for() -> None:
    broadcaster = Broadcaster()
    slow = broadcaster.attach()
    fast = broadcaster.attach()
    for n in range(CLIENT_QUEUE):
        broadcaster.publish("state", {"n": n})
        fast.get_nowait()
    assert broadcaster.clients == 2
    broadcaster.publish("state", {"n": CLIENT_QUEUE})  # one more than the slow one holds
    assert broadcaster.clients == 1
    assert slow.get_nowait() is None  # its stream ends; it resumes from the log
    event = fast.get_nowait()
    assert event is not None
    assert event.body == {"n": CLIENT_QUEUE}
    broadcaster.close_all()
    assert fast.get_nowait() is None
    assert broadcaster.clients == 0
