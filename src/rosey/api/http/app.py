"""The HTTP face's application: token check, routes over ``api/actions``, envelopes → statuses.

Every request needs ``Authorization: Bearer <token>`` (compared in constant time); only the
dashboard page, ``GET /``, also takes the token as ``?token=`` because a browser cannot send a
header when it opens a link (the page keeps it and sends the header from then on). Every reply
but the page, the event stream and the metrics is an envelope of DESIGN 2.6, and its HTTP
status follows ``error.code`` (``openapi.STATUS_OF_CODE``), also for the server's own errors
(no route, wrong method, body too large, a request the server refused: ``server.py``), so a
client reads one shape whatever went wrong.

Like the chat and NATS faces this holds no behaviour of its own: each route turns the request
into an action's fields and calls ``Action.execute``. Mutations are logged with who asked
(``http:<remote address>``), as the chat face names its callers.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import secrets
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import rosey
from rosey.api.actions import ACTIONS
from rosey.api.http import metrics as metrics_mod
from rosey.api.http import openapi
from rosey.api.http.events import STATE, VIOLATION, Broadcaster, frame, gap_frame
from rosey.api.http.messages import Limits, Request, Response, Send
from rosey.api.http.replies import (
    dashboard_page,
    dumps_any,
    envelope_error,
    json_response,
    parse_body,
    secured,
    server_error,
)
from rosey.api.http.replies import status_for as status_for  # the face's table, re-exported
from rosey.api.http.routing import Route, resolve, route
from rosey.api.http.server import HttpServer
from rosey.bus.client import EventBus, Message, Subscription
from rosey.errors import BadRequest, BodyTooLarge, RoseyError
from rosey.protocol import subjects
from rosey.protocol.text import clean

if TYPE_CHECKING:
    from rosey.manager.manager import PluginManager
    from rosey.manager.supervisor import PluginSupervisor

log = logging.getLogger("rosey.http")

Handler = Callable[[Request, dict[str, str]], Awaitable[Response]]
#: Seconds between keep-alive comments on an idle event stream (proxies close silent ones).
KEEPALIVE_S = 15.0
#: Seconds ``stop`` gives requests in progress (open event streams are ended first).
STOP_GRACE_S = 2.0
#: What one client may cost (``server.Limits``); bodies as the OpenAPI description says.
LIMITS = Limits(max_body=openapi.MAX_BODY_BYTES)
#: The mutating actions ``POST /api/plugins/{name}/{action}`` runs: those about one plugin
#: (the path names it; install's ``plugin`` is the name its source must hold). Their other
#: fields (``source``, ``yes``, ``force``, ``purge``) come in the JSON body.
POST_ACTIONS = tuple(
    name for name, a in ACTIONS.items() if a.mutating and "plugin" in a.request.model_fields
)


def token_matches(given: str | None, token: str) -> bool:
    """Whether ``given`` is the token, in time independent of where they differ."""
    if not given:
        return False
    return hmac.compare_digest(given.encode("utf-8", "replace"), token.encode())


def bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, else None."""
    if header is None:
        return None
    scheme, _, value = header.strip().partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


class HttpFace:
    """The HTTP face of one bot: start it once the manager runs, stop it before the manager."""

    def __init__(
        self, manager: PluginManager, bus: EventBus, *, token: str, version: str = "0"
    ) -> None:
        self.manager = manager
        self.bus = bus
        self.token = token
        self.version = version
        self.events = Broadcaster()
        self.metrics = metrics_mod.Metrics(lambda name: name in manager.supervisors)
        self.url: str | None = None
        page, self._policy = dashboard_page()
        self._page_bytes = page.encode()
        self._server: HttpServer | None = None
        self._subscriptions: list[Subscription] = []
        self._spec = openapi.build(list(POST_ACTIONS), version)
        self.routes: list[Route[Handler]] = [
            route("GET", "/", self._dashboard),
            route("GET", "/api/plugins", self._list),
            route("GET", "/api/plugins/{name}", self._status),
            route("GET", "/api/plugins/{name}/logs", self._logs),
            # Not ``logs``: that path is GET only, and must say so (405, ``Allow: GET,HEAD``).
            route(
                "POST", "/api/plugins/{name}/{action}", self._act, excluded=(("action", "logs"),)
            ),
            route("GET", "/api/events", self._events),
            route("GET", "/api/openapi.json", self._openapi),
            route("GET", "/metrics", self._metrics),
        ]

    async def start(self, listen: str) -> str:
        """Subscribe to the bus events and listen on ``HOST:PORT``; the base URL (real port)."""
        for subject, handler in (
            (subjects.MANAGER_EVENTS_ALL, self._on_state),
            (subjects.SECURITY_VIOLATION, self._on_violation),
            (subjects.COMMANDS_RESULTS_ALL, self._on_outcome),
            (subjects.COMMANDS_ERRORS_ALL, self._on_outcome),
        ):
            self._subscriptions.append(await self.bus.subscribe(subject, handler))
        host, _, port = listen.rpartition(":")
        host = host.strip("[]")
        server = HttpServer(self.handle, server_error, LIMITS)
        bound = await server.start(host, int(port))
        self._server = server
        shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
        self.url = f"http://{shown}:{bound[1]}"
        return self.url

    async def stop(self) -> None:
        """End the event streams, stop listening, drop the subscriptions (idempotent)."""
        self.events.close_all()
        if self._server is not None:
            server, self._server = self._server, None
            await server.stop(STOP_GRACE_S)
        for subscription in self._subscriptions:
            with contextlib.suppress(RoseyError):
                await subscription.unsubscribe()
        self._subscriptions.clear()

    # --- bus → events and metrics ---------------------------------------------------------

    async def _on_state(self, msg: Message) -> None:
        self._relay(STATE, msg)

    async def _on_violation(self, msg: Message) -> None:
        self._relay(VIOLATION, msg)

    def _relay(self, kind: str, msg: Message) -> None:
        try:
            body = msg.json()
        except RoseyError as exc:
            log.warning("http: unreadable event on %s dropped: %s", msg.subject, exc)
            return
        self.events.publish(kind, body)

    async def _on_outcome(self, msg: Message) -> None:
        _, plugin, outcome = msg.subject.rsplit(".", 2)
        with contextlib.suppress(RoseyError):
            self.metrics.commands.observe(
                plugin, "ok" if outcome == "result" else "error", msg.json()
            )

    # --- the guard: token, route, errors, common headers ---------------------------------

    async def handle(self, request: Request) -> Response:
        """The token check, then the route; every failure an envelope with its status."""
        given = bearer(request.header("Authorization"))
        if given is None and request.path == "/" and request.method == "GET":
            given = request.target.first("token")
        if not token_matches(given, self.token):
            return secured(
                envelope_error(
                    "unauthorized",
                    "send Authorization: Bearer <http_token from runtime.json> (open the "
                    "dashboard with the URL the bot prints at start-up)",
                )
            )
        found = resolve(self.routes, request.method, request.target.segments)
        if found.handler is None:  # no route, wrong method: still an envelope
            where = f"{request.method} {request.path[:100]}"
            if not found.allowed:
                return secured(envelope_error("not_found", f"{where}: Not Found"))
            response = envelope_error("bad_request", f"{where}: Method Not Allowed", 405)
            response.headers.append(("Allow", ",".join(found.allowed)))
            return secured(response)
        try:
            response = await found.handler(request, found.params)
        except Exception as exc:
            log.exception("http: %s %s failed", request.method, request.path[:100])
            response = envelope_error("internal", type(exc).__name__)
        return response if response.stream is not None else secured(response)

    # --- routes -----------------------------------------------------------------------------

    async def _run(
        self, request: Request, name: str, data: dict[str, Any], *, strict: bool
    ) -> Response:
        action = ACTIONS[name]
        if action.mutating:  # the name is anyone's text: no escapes in the log
            plugin = clean(str(data.get("plugin", ""))[:64], one_line=True)
            log.info("http:%s asked: %s %s", request.remote, name, plugin)
        try:
            result = await action.execute(self.manager, data, strict=strict)
        except RoseyError as exc:
            if action.mutating:
                log.info("http:%s: %s refused: %s", request.remote, name, exc.code)
            return envelope_error(exc.code, str(exc))
        return json_response({"ok": True, "result": result}, dumps=dumps_any)

    async def _list(self, request: Request, params: dict[str, str]) -> Response:
        return await self._run(request, "list", {}, strict=True)

    async def _status(self, request: Request, params: dict[str, str]) -> Response:
        return await self._run(request, "status", {"plugin": params["name"]}, strict=True)

    async def _logs(self, request: Request, params: dict[str, str]) -> Response:
        data: dict[str, Any] = {"plugin": params["name"]}
        query = request.target.query
        for key, value in query:
            given = sum(1 for other, _ in query if other == key)
            if given != 1:
                return envelope_error("bad_request", f"query {key!r} given {given} times")
            if key == "plugin":
                return envelope_error("bad_request", "the plugin is named by the path")
            data[key] = value
        # Query values are strings: parsed leniently, as chat and CLI words are ("20" is 20).
        return await self._run(request, "logs", data, strict=False)

    async def _act(self, request: Request, params: dict[str, str]) -> Response:
        name = params["action"]
        if name not in POST_ACTIONS:
            shown = name if len(name) <= 40 else name[:37] + "..."
            return envelope_error(
                "not_found", f"no action {shown!r} here; actions: {', '.join(POST_ACTIONS)}"
            )
        try:
            fields = parse_body(await request.read())
        except BodyTooLarge as exc:
            text = f"the body is too large (Request Entity Too Large): at most {exc.limit} bytes"
            return envelope_error("too_large", text)
        except BadRequest as exc:
            return envelope_error(exc.code, str(exc))
        if "plugin" in fields:
            return envelope_error("bad_request", "the plugin is named by the path, not the body")
        fields["plugin"] = params["name"]
        return await self._run(request, name, fields, strict=True)

    async def _openapi(self, request: Request, params: dict[str, str]) -> Response:
        return json_response(self._spec)

    async def _dashboard(self, request: Request, params: dict[str, str]) -> Response:
        return Response(
            200,
            [
                ("Content-Type", "text/html; charset=utf-8"),
                ("Content-Security-Policy", self._policy),
            ],
            self._page_bytes,
        )

    async def _metrics(self, request: Request, params: dict[str, str]) -> Response:
        statuses = [dict(s) for s in self.manager.get_all_status()]
        pids = [(s.get("stats") or {}).get("pid") for s in statuses]
        supervisors = [self.manager.supervisors.get(str(s["name"])) for s in statuses]

        def cpu_of(supervisor: PluginSupervisor | None, pid: int | None) -> float | None:
            # The cgroup's counter when there is one: the /proc tree misses exited children,
            # and a forked plugin's few milliseconds round down to 0 there.
            counted = supervisor.cpu_seconds() if supervisor is not None else None
            return counted if counted is not None else metrics_mod.tree_cpu_seconds(pid)

        cpu = await asyncio.to_thread(
            lambda: [cpu_of(s, p) for s, p in zip(supervisors, pids, strict=True)]
        )
        pings = await asyncio.gather(*(self._ping(s) for s in statuses))
        for status in statuses:  # the violation count lives beside STATUS (api/results.py)
            supervisor = self.manager.supervisors.get(str(status["name"]))
            status["violations"] = int(getattr(supervisor, "violations", 0))
        samples = [
            metrics_mod.sample_from_status(s, c, p)
            for s, c, p in zip(statuses, cpu, pings, strict=True)
        ]
        current = metrics_mod.families(
            samples, broker_connected=self.bus.is_connected, event_clients=self.events.clients
        )
        body = await self.metrics.render(current)
        return Response(200, [("Content-Type", metrics_mod.CONTENT_TYPE)], body)

    async def _ping(self, status: dict[str, Any]) -> float | None:
        if status.get("state") not in ("running", "unhealthy"):
            return None
        name = str(status["name"])
        return await metrics_mod.ping_seconds(lambda: self.manager.health_check_plugin(name))

    async def _events(self, request: Request, params: dict[str, str]) -> Response:
        last = request.header("Last-Event-ID")
        gap, missed = self.events.log.since(last[:64] if last else None)
        # Attached before the reply's head is sent: no event falls in between.
        queue = self.events.attach()
        headers = [
            ("Content-Type", "text/event-stream"),
            ("Cache-Control", "no-store"),
            ("X-Content-Type-Options", "nosniff"),
            ("X-Accel-Buffering", "no"),
        ]

        async def stream(send: Send) -> None:
            # The retry hint, then what the client missed (a gap first when it may miss more).
            await send(b"retry: 1000\n\n")
            if gap:
                await send(gap_frame(self.events.log))
            for old in missed:
                await send(frame(old))
            while True:
                try:
                    async with asyncio.timeout(KEEPALIVE_S):
                        event = await queue.get()
                except TimeoutError:
                    await send(b": keep-alive\n\n")
                    continue
                if event is None:  # the face is stopping, or this client fell behind
                    return
                await send(frame(event))

        # Detached once the response is done with: ended, the client gone, or never streamed.
        return Response(200, headers, stream=stream, done=lambda: self.events.detach(queue))


async def serve(
    stack: contextlib.AsyncExitStack,
    manager: PluginManager,
    bus: EventBus,
    listen: str | None,
    *,
    announce: bool = False,
) -> HttpFace | None:
    """Start the HTTP face on ``listen`` (None: off) and have ``stack`` stop it; the bot's hook.

    A port that cannot be bound is logged and the bot runs on without the face: the dashboard
    is not worth stopping the plugins for. The token is new at every start. ``announce``
    (console mode, where the log shows warnings only) also prints the dashboard URL.
    """
    if listen is None:
        return None
    face = HttpFace(manager, bus, token=secrets.token_urlsafe(32), version=rosey.__version__)
    stack.push_async_callback(face.stop)
    try:
        url = await face.start(listen)
    except OSError as exc:
        log.error(
            "HTTP face off: cannot listen on %s (%s); set http.listen in the config (null: off)",
            listen,
            exc.strerror or exc,
        )
        await face.stop()
        return None
    log.info("dashboard: %s/?token=%s (API and /metrics need the same token)", url, face.token)
    if announce:
        print(f"rosey: dashboard at {url}/?token={face.token}", file=sys.stderr, flush=True)
    return face
