"""The HTTP server (aiohttp): token check, routes over ``api/actions``, envelopes → statuses.

Every request needs ``Authorization: Bearer <token>`` (compared in constant time); only the
dashboard page, ``GET /``, also takes the token as ``?token=`` because a browser cannot send a
header when it opens a link (the page keeps it and sends the header from then on). Every reply
but the page, the event stream and the metrics is an envelope of DESIGN 2.6, and its HTTP
status follows ``error.code`` (``openapi.STATUS_OF_CODE``), also for the server's own errors
(no route, wrong method, body too large), so a client reads one shape whatever went wrong.

Like the chat and NATS faces this holds no behaviour of its own: each route turns the request
into an action's fields and calls ``Action.execute``. Mutations are logged with who asked
(``http:<remote address>``), as the chat face names its callers.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import logging
import secrets
import sys
from collections.abc import Awaitable, Callable
from importlib import metadata, resources
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from rosey.api.actions import ACTIONS
from rosey.api.http import metrics as metrics_mod
from rosey.api.http import openapi
from rosey.api.http.events import STATE, VIOLATION, Broadcaster, Event, frame, gap_frame
from rosey.bus.client import EventBus, Message, Subscription
from rosey.errors import BadRequest, RoseyError
from rosey.protocol import subjects
from rosey.protocol.text import clean

if TYPE_CHECKING:
    from rosey.manager.manager import PluginManager
    from rosey.manager.supervisor import PluginSupervisor

log = logging.getLogger("rosey.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: Seconds between keep-alive comments on an idle event stream (proxies close silent ones).
KEEPALIVE_S = 15.0
#: The mutating actions ``POST /api/plugins/{name}/{action}`` runs: those about one plugin
#: (the path names it; install's ``plugin`` is the name its source must hold). Their other
#: fields (``source``, ``yes``, ``force``, ``purge``) come in the JSON body.
POST_ACTIONS = tuple(
    name for name, a in ACTIONS.items() if a.mutating and "plugin" in a.request.model_fields
)


def _not_a_protocol_error(record: logging.LogRecord) -> bool:
    """Filter for ``aiohttp.server``: a request that is not valid HTTP already got its 400;
    aiohttp would log it at ERROR with a traceback, which anyone who can connect could repeat.
    """
    error = record.exc_info[1] if record.exc_info else None
    return not isinstance(error, HttpProcessingError)


def status_for(code: str) -> int:
    """The HTTP status of an envelope's ``error.code``; an unknown code is a 500."""
    return openapi.STATUS_OF_CODE.get(code, 500)


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


def envelope_error(code: str, message: str, status: int | None = None) -> web.Response:
    """An error envelope; its HTTP status follows ``code`` unless ``status`` is given."""
    body = {"ok": False, "error": {"code": code, "message": message}}
    response = web.json_response(body, status=status or status_for(code))
    if code == "unauthorized":
        response.headers["WWW-Authenticate"] = 'Bearer realm="rosey"'
    return response


def _page() -> tuple[str, str]:
    """The dashboard page with its script and style inlined, and its Content-Security-Policy.

    Inlined, so opening ``/?token=`` is the only request made without the header; the policy
    allows exactly these inline blocks (by hash) and requests to this server, nothing else.
    """
    folder = resources.files("rosey.api.http") / "static"
    html = (folder / "index.html").read_text(encoding="utf-8")
    script = (folder / "app.js").read_text(encoding="utf-8")
    style = (folder / "style.css").read_text(encoding="utf-8")
    page = html.replace("/*STYLE*/", style).replace("/*SCRIPT*/", script)

    def digest(text: str) -> str:
        return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"

    policy = (
        f"default-src 'none'; script-src {digest(script)}; style-src {digest(style)}; "
        "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )
    return page, policy


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
        self._page, self._policy = _page()
        self._runner: web.AppRunner | None = None
        self._subscriptions: list[Subscription] = []
        self._spec = openapi.build(list(POST_ACTIONS), version)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard], client_max_size=openapi.MAX_BODY_BYTES)
        app.router.add_get("/", self._dashboard)
        app.router.add_get("/api/plugins", self._list)
        app.router.add_get("/api/plugins/{name}", self._status)
        app.router.add_get("/api/plugins/{name}/logs", self._logs)
        # Not ``logs``: that path is GET only, and must say so (405, ``Allow: GET``).
        app.router.add_post("/api/plugins/{name}/{action:(?!logs$)[^/]+}", self._act)
        app.router.add_get("/api/events", self._events)
        app.router.add_get("/api/openapi.json", self._openapi)
        app.router.add_get("/metrics", self._metrics)
        return app

    async def start(self, listen: str) -> str:
        """Subscribe to the bus events and listen on ``HOST:PORT``; the base URL (real port)."""
        for subject, handler in (
            (subjects.MANAGER_EVENTS_ALL, self._on_state),
            (subjects.SECURITY_VIOLATION, self._on_violation),
            (subjects.COMMANDS_RESULTS_ALL, self._on_outcome),
            (subjects.COMMANDS_ERRORS_ALL, self._on_outcome),
        ):
            self._subscriptions.append(await self.bus.subscribe(subject, handler))
        server_log = logging.getLogger("aiohttp.server")
        if _not_a_protocol_error not in server_log.filters:
            server_log.addFilter(_not_a_protocol_error)
        host, _, port = listen.rpartition(":")
        host = host.strip("[]")
        # A short shutdown: open event streams are ended by ``stop`` before the runner waits.
        self._runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, int(port), reuse_address=True)
        await site.start()
        bound = self._runner.addresses[0]
        shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
        self.url = f"http://{shown}:{bound[1]}"
        return self.url

    async def stop(self) -> None:
        """End the event streams, stop listening, drop the subscriptions (idempotent)."""
        self.events.close_all()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
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

    # --- middleware -------------------------------------------------------------------------

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        given = bearer(request.headers.get("Authorization"))
        if given is None and request.path == "/" and request.method == "GET":
            given = request.query.get("token")
        if not token_matches(given, self.token):
            response: web.StreamResponse = envelope_error(
                "unauthorized",
                "send Authorization: Bearer <http_token from runtime.json> (open the dashboard "
                "with the URL the bot prints at start-up)",
            )
        else:
            try:
                response = await handler(request)
            except web.HTTPRequestEntityTooLarge as exc:
                response = envelope_error(
                    "too_large",
                    f"the body is too large ({exc.reason}): at most {openapi.MAX_BODY_BYTES} bytes",
                )
            except web.HTTPException as exc:  # no route, wrong method: still an envelope
                code = "not_found" if exc.status == 404 else "bad_request"
                text = f"{request.method} {request.path[:100]}: {exc.reason}"
                response = envelope_error(code, text, exc.status if exc.status < 500 else None)
                if "Allow" in exc.headers:
                    response.headers["Allow"] = exc.headers["Allow"]
            except Exception as exc:
                log.exception("http: %s %s failed", request.method, request.path)
                response = envelope_error("internal", type(exc).__name__)
        if not response.prepared:
            response.headers.setdefault("Cache-Control", "no-store")
            response.headers["X-Content-Type-Options"] = "nosniff"
            response.headers["Referrer-Policy"] = "no-referrer"  # the page URL has the token
        return response

    # --- routes -----------------------------------------------------------------------------

    async def _run(
        self, request: web.Request, name: str, data: dict[str, Any], *, strict: bool
    ) -> web.Response:
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
        return web.json_response({"ok": True, "result": result}, dumps=_dumps)

    async def _list(self, request: web.Request) -> web.Response:
        return await self._run(request, "list", {}, strict=True)

    async def _status(self, request: web.Request) -> web.Response:
        return await self._run(
            request, "status", {"plugin": request.match_info["name"]}, strict=True
        )

    async def _logs(self, request: web.Request) -> web.Response:
        data: dict[str, Any] = {"plugin": request.match_info["name"]}
        for key in request.query:
            values = request.query.getall(key)
            if len(values) != 1:
                return envelope_error("bad_request", f"query {key!r} given {len(values)} times")
            if key == "plugin":
                return envelope_error("bad_request", "the plugin is named by the path")
            data[key] = values[0]
        # Query values are strings: parsed leniently, as chat and CLI words are ("20" is 20).
        return await self._run(request, "logs", data, strict=False)

    async def _act(self, request: web.Request) -> web.Response:
        name = request.match_info["action"]
        if name not in POST_ACTIONS:
            shown = name if len(name) <= 40 else name[:37] + "..."
            return envelope_error(
                "not_found", f"no action {shown!r} here; actions: {', '.join(POST_ACTIONS)}"
            )
        try:
            fields = _body(await request.read())
        except BadRequest as exc:
            return envelope_error(exc.code, str(exc))
        if "plugin" in fields:
            return envelope_error("bad_request", "the plugin is named by the path, not the body")
        fields["plugin"] = request.match_info["name"]
        return await self._run(request, name, fields, strict=True)

    async def _openapi(self, request: web.Request) -> web.Response:
        return web.json_response(self._spec)

    async def _dashboard(self, request: web.Request) -> web.Response:
        response = web.Response(text=self._page, content_type="text/html")
        response.headers["Content-Security-Policy"] = self._policy
        return response

    async def _metrics(self, request: web.Request) -> web.Response:
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
        return web.Response(body=body, headers={"Content-Type": metrics_mod.CONTENT_TYPE})

    async def _ping(self, status: dict[str, Any]) -> float | None:
        if status.get("state") not in ("running", "unhealthy"):
            return None
        name = str(status["name"])
        return await metrics_mod.ping_seconds(lambda: self.manager.health_check_plugin(name))

    async def _events(self, request: web.Request) -> web.StreamResponse:
        last = request.headers.get("Last-Event-ID")
        gap, missed = self.events.log.since(last[:64] if last else None)
        queue: asyncio.Queue[Event | None] = (
            self.events.attach()
        )  # before the first await: no event falls in between
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Content-Type-Options": "nosniff",
                "X-Accel-Buffering": "no",
            }
        )
        try:
            await response.prepare(request)
            # The retry hint, then what the client missed (a gap first when it may miss more).
            await response.write(b"retry: 1000\n\n")
            if gap:
                await response.write(gap_frame(self.events.log))
            for old in missed:
                await response.write(frame(old))
            while True:
                try:
                    async with asyncio.timeout(KEEPALIVE_S):
                        event = await queue.get()
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                if event is None:  # the face is stopping, or this client fell behind
                    break
                await response.write(frame(event))
        except ConnectionResetError:
            pass  # the client went away
        finally:
            self.events.detach(queue)
        return response


def _body(data: bytes) -> dict[str, Any]:
    """The fields of a POST body: none, or a JSON object (``BadRequest`` saying what is wrong)."""
    if not data.strip():
        return {}
    try:
        body = json.loads(data)
    except UnicodeDecodeError:
        raise BadRequest("the body is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise BadRequest(f"the body is not valid JSON: {exc.msg} at character {exc.pos}") from None
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise BadRequest(f"the body must be a JSON object, got {type(body).__name__}")
    return body


def _dumps(value: Any) -> str:
    return json.dumps(value, default=str)


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
    face = HttpFace(manager, bus, token=secrets.token_urlsafe(32), version=_version())
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


def _version() -> str:
    try:
        return metadata.version("rosey")
    except metadata.PackageNotFoundError:
        return "0"
