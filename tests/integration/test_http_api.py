"""The HTTP face against a real ``rosey run`` (DESIGN 2.11): token, envelopes and statuses,
live events with resume, and Prometheus metrics read with Prometheus' own parser.

Plugins: dice (from ``plugins/``), ``crash_on_command`` and ``dashboard_hostile`` (fixtures).
"""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path
from typing import Any

from nats.aio.msg import Msg
from prometheus_client.parser import text_string_to_metric_families

from botproc import EXAMPLE_PLUGINS, FIXTURE_PLUGINS, run_bot
from helpers import eventually
from httpface import HTTP_ON, http_api

PLUGINS = [EXAMPLE_PLUGINS / "dice", FIXTURE_PLUGINS / "crash_on_command"]
HOSTILE = FIXTURE_PLUGINS / "dashboard_hostile"
ROUTES = [
    ("GET", "/api/plugins"),
    ("GET", "/api/plugins/dice"),
    ("GET", "/api/plugins/dice/logs?lines=5"),
    ("POST", "/api/plugins/dice/stop"),
    ("GET", "/api/events"),
    ("GET", "/api/openapi.json"),
    ("GET", "/metrics"),
    ("GET", "/"),
]
#: Each metric DESIGN 2.11 names, and the others an operator graphs (as exposed, with suffixes).
METRICS = {
    "rosey_plugin_up",
    "rosey_plugin_restarts",
    "rosey_plugin_memory_bytes",
    "rosey_plugin_cpu_seconds",
    "rosey_commands",
    "rosey_command_duration_seconds",
    "rosey_security_violations",
    "rosey_plugin_health_ping_seconds",
    "rosey_plugin_backoff_in_progress",
    "rosey_broker_connected",
    "rosey_plugin_state",
}


async def test_every_request_needs_the_token(tmp_path: Path) -> None:
    async with run_bot(tmp_path, plugins_dirs=PLUGINS, config=HTTP_ON) as bot, http_api(bot) as api:
        assert api.url.startswith("http://127.0.0.1:")
        wrong = api.token[:-1] + ("A" if api.token[-1] != "A" else "B")
        for method, path in ROUTES:
            for token in (None, wrong, "", api.token.upper()):
                status, body = await api.request(method, path, token=token or None)
                assert status == 401, (method, path, token, body)
                assert body["ok"] is False
                assert body["error"]["code"] == "unauthorized"
            # Another scheme, or the token in the query (only the page takes that), is refused.
            status, _ = await api.request(
                method, path, token=None, headers={"Authorization": f"Basic {api.token}"}
            )
            assert status == 401
            if path != "/":
                sep = "&" if "?" in path else "?"
                status, _ = await api.request(method, f"{path}{sep}token={api.token}", token=None)
                assert status == 401, path
        # The dice plugin was never stopped by any of these.
        status, body = await api.get("/api/plugins/dice")
        assert (status, body["result"]["state"]) == (200, "running")
        # The page: with ?token=, self-contained (no outside resource), under a strict policy.
        async with api.session.get(f"{api.url}/?token={api.token}") as response:
            page = await response.text()
            assert response.status == 200
            policy = response.headers["Content-Security-Policy"]
        assert "default-src 'none'" in policy
        assert "connect-src 'self'" in policy
        assert "unsafe-inline" not in policy
        assert not re.findall(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", page)
        assert "@import" not in page
        assert "url(" not in page


async def test_actions_answer_envelopes_with_their_http_status(tmp_path: Path) -> None:
    async with run_bot(tmp_path, plugins_dirs=PLUGINS, config=HTTP_ON) as bot, http_api(bot) as api:
        status, body = await api.get("/api/plugins")
        assert status == 200
        assert body["ok"] is True
        assert {p["name"] for p in body["result"]["plugins"]} == {"dice", "crash_on_command"}
        # Same envelope as the NATS face.
        nats_reply = await bot.manage("status", {"plugin": "dice"})
        status, body = await api.get("/api/plugins/dice")
        assert status == 200
        assert set(body["result"]) == set(nats_reply["result"])
        status, body = await api.get("/api/plugins/dice/logs?lines=3")
        assert status == 200
        assert len(body["result"]["lines"]) <= 3
        assert body["result"]["cursor"]

        cases: list[tuple[str, str, bytes | None, int, str]] = [
            ("GET", "/api/plugins/nope", None, 404, "not_found"),
            ("GET", "/api/plugins/" + "x" * 65, None, 400, "bad_request"),
            ("GET", "/api/plugins/dice/logs?lines=0", None, 400, "bad_request"),
            ("GET", "/api/plugins/dice/logs?lines=many", None, 400, "bad_request"),
            ("GET", "/api/plugins/dice/logs?lines=1&lines=2", None, 400, "bad_request"),
            ("GET", "/api/plugins/dice/logs?colour=red", None, 400, "bad_request"),
            ("POST", "/api/plugins/nope/stop", None, 404, "not_found"),
            ("POST", "/api/plugins/dice/explode", None, 404, "not_found"),
            ("POST", "/api/plugins/dice/stop", b"{not json", 400, "bad_request"),
            ("POST", "/api/plugins/dice/stop", b"[1, 2]", 400, "bad_request"),
            ("POST", "/api/plugins/dice/stop", b"\xff\xfe", 400, "bad_request"),
            ("POST", "/api/plugins/dice/stop", b'{"plugin": "x"}', 400, "bad_request"),
            ("POST", "/api/plugins/dice/stop", b'{"force": true}', 400, "bad_request"),
            ("POST", "/api/plugins/dice/stop", b"{" + b" " * 70_000 + b"}", 413, "too_large"),
            ("GET", "/api/nowhere", None, 404, "not_found"),
            ("DELETE", "/api/plugins/dice", None, 405, "bad_request"),
        ]
        for method, path, data, want_status, code in cases:
            status, body = await api.request(method, path, data=data)
            assert (status, body["error"]["code"]) == (want_status, code), (method, path, body)
            assert body["error"]["message"]
        # The messages say what is allowed.
        _, body = await api.post("/api/plugins/dice/explode")
        assert "actions: start, stop, restart, enable, disable" in body["error"]["message"]
        _, body = await api.get("/api/plugins/dice/logs?lines=0")
        assert "lines" in body["error"]["message"]
        # None of that touched dice.
        _, body = await api.get("/api/plugins/dice")
        assert body["result"]["state"] == "running"

        # Mutations: replies once done; refusals are 409; who asked is logged.
        status, body = await api.post("/api/plugins/dice/stop", data=b"{}")
        assert (status, body["result"]["state"]) == (200, "stopped")
        status, body = await api.post("/api/plugins/dice/disable")
        assert (status, body["result"]["state"]) == (200, "disabled")
        status, body = await api.post("/api/plugins/dice/start")
        assert (status, body["error"]["code"]) == (409, "invalid_state"), body
        status, body = await api.post("/api/plugins/dice/enable")
        assert status == 200
        assert body["result"]["enabled"] is True
        status, body = await api.post("/api/plugins/dice/start")
        assert (status, body["result"]["state"]) == (200, "running")
        await bot.wait_for_log("http:127.0.0.1 asked: stop dice", timeout=5)
        await bot.wait_for_log("http:127.0.0.1 asked: disable dice", timeout=5)


async def test_events_stream_every_state_change_and_resume_after_a_reconnect(
    tmp_path: Path,
) -> None:
    async with run_bot(tmp_path, plugins_dirs=PLUGINS, config=HTTP_ON) as bot, http_api(bot) as api:
        assert bot.nc is not None
        on_bus: list[dict[str, Any]] = []

        async def spy(msg: Msg) -> None:
            on_bus.append(json.loads(msg.data))

        await bot.nc.subscribe("rosey.manager.events.dice", cb=spy)
        await bot.nc.flush()
        async with api.events() as stream:
            status, _ = await api.post("/api/plugins/dice/stop")
            assert status == 200
            stopping = await stream.until("state", {"plugin": "dice", "state": "stopping"})
            stopped = await stream.until("state", {"plugin": "dice", "state": "stopped"})
            seen = stream.last_id
        assert seen is not None
        assert stopped.id == seen
        # The bodies are the bus events, unchanged (the spy may get them a moment later).
        await _on_bus(on_bus, stopping.body, stopped.body)
        assert set(stopped.body) == {"plugin", "state", "previous", "reason", "timestamp"}

        # Disconnected: dice starts again (starting, running) and the bot reports it meanwhile.
        status, _ = await api.post("/api/plugins/dice/start")
        assert status == 200
        async with api.events(last_id=seen) as stream:
            starting = await stream.next(timeout=5)
            running = await stream.next(timeout=5)
        assert (starting.kind, starting.body["state"]) == ("state", "starting")
        assert (running.kind, running.body["state"]) == ("state", "running")
        await _on_bus(on_bus, starting.body, running.body)

        # An id of another run (or garbage) says "gap" first, then what the buffer has.
        async with api.events(last_id="0000-5") as stream:
            first = await stream.next(timeout=5)
            assert first.kind == "gap"
            assert (await stream.next(timeout=5)).body == stopping.body
        async with api.events(last_id="x" * 5000) as stream:
            assert (await stream.next(timeout=5)).kind == "gap"


async def test_violations_reach_the_event_stream_and_the_metrics(
    tmp_path: Path, bot_privilege: str
) -> None:
    unprivileged = bot_privilege == "unprivileged"
    async with (
        run_bot(tmp_path, plugins_dirs=[HOSTILE], config=HTTP_ON, unprivileged=unprivileged) as bot,
        http_api(bot) as api,
    ):
        async with api.events() as stream:
            assert await bot.chat("!forbidden") == "published"
            event = await stream.until("violation", {"plugin": "dashboard_hostile"})
        assert event.body["subject"] == "rosey.manager.<img/src/onerror=window.__pwned=3>"
        assert {"plugin", "kind", "subject", "detail", "timestamp"} <= set(event.body)
        status, text = await api.get("/metrics")
        assert status == 200
        found = _samples(text)
        assert found[("rosey_security_violations_total", (("plugin", "dashboard_hostile"),))] >= 1


async def test_metrics_parse_and_count_commands_with_bounded_labels(tmp_path: Path) -> None:
    config = HTTP_ON + "backoff: {initial_s: 30, max_s: 30, jitter: 0}\n"
    async with run_bot(tmp_path, plugins_dirs=PLUGINS, config=config) as bot, http_api(bot) as api:
        assert (await bot.chat("!alive zzz-user-text")).startswith("alive")
        assert await bot.chat("!roll zzz-user-text")  # a usage reply: still an answer
        async with api.session.get(api.url + "/metrics", headers=api.headers()) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = await response.text()
        families = {f.name for f in text_string_to_metric_families(text)}
        assert families >= METRICS, METRICS - families
        found = _samples(text)
        one = (("outcome", "ok"), ("plugin", "crash_on_command"))
        assert found[("rosey_commands_total", one)] == 1
        count = ("rosey_command_duration_seconds_count", (("plugin", "crash_on_command"),))
        assert found[count] == 1
        assert found[("rosey_plugin_up", (("plugin", "dice"),))] == 1
        assert found[("rosey_broker_connected", ())] == 1
        assert found[("rosey_plugin_health_ping_seconds", (("plugin", "dice"),))] > 0
        assert found[("rosey_plugin_memory_bytes", (("plugin", "dice"),))] > 1024 * 1024
        assert found[("rosey_plugin_cpu_seconds_total", (("plugin", "dice"),))] > 0
        # Labels: plugin names, states and outcomes only; nothing a user typed.
        assert "zzz" not in text
        names = {"dice", "crash_on_command"}
        for (_, labels), _value in found.items():
            values = dict(labels)
            assert values.get("plugin", "dice") in names
            assert set(values) <= {"plugin", "state", "outcome", "kind", "le"}

        # A crash shows as down, with a crash counted and a restart waiting (backoff 30 s).
        async with api.events() as stream:
            await _crash(bot)
            await stream.until("state", {"plugin": "crash_on_command", "state": "crashed"})
        _, text = await api.get("/metrics")
        found = _samples(text)
        crashed = (("plugin", "crash_on_command"),)
        assert found[("rosey_plugin_up", crashed)] == 0
        assert found[("rosey_plugin_state", (*crashed, ("state", "crashed")))] == 1
        assert found[("rosey_plugin_crashes", crashed)] == 1
        assert found[("rosey_plugin_backoff_in_progress", crashed)] == 1
        assert 0 < found[("rosey_plugin_backoff_seconds", crashed)] <= 30
        assert ("rosey_plugin_health_ping_seconds", crashed) not in found


async def test_http_null_turns_the_face_off(tmp_path: Path) -> None:
    async with run_bot(tmp_path, plugins_dirs=PLUGINS, config="http: null\n") as bot:
        assert bot.runtime.get("http_url") is None
        assert bot.runtime.get("http_token") is None
        assert not any("dashboard:" in line for line in bot.log)


async def test_a_busy_port_leaves_the_bot_running_without_the_face(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = f'http: {{listen: "127.0.0.1:{port}"}}\n'
        async with run_bot(tmp_path, plugins_dirs=PLUGINS, config=config) as bot:
            assert bot.runtime.get("http_url") is None
            await bot.wait_for_log(f"HTTP face off: cannot listen on 127.0.0.1:{port}", timeout=5)
            assert await bot.chat("!roll 1d1") == "tester rolled 1d1: 🎲 1"


async def _crash(bot: Any) -> None:
    """``!crash`` ends the plugin before it answers: the router's reply says so."""
    await bot.chat("!crash", timeout=15)


async def _on_bus(on_bus: list[dict[str, Any]], *bodies: dict[str, Any]) -> None:
    async def seen() -> bool:
        return all(body in on_bus for body in bodies)

    await eventually(seen, 5, f"{bodies} published on the bus")


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found
