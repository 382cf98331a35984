"""The face's replies: envelopes with their HTTP status, the headers every reply carries, the
dashboard page with its Content-Security-Policy (read from ``static/``), and the POST body's
fields. No I/O but reading the page's files."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rosey.api.http import openapi
from rosey.api.http.messages import Response
from rosey.errors import BadRequest

JSON = "application/json; charset=utf-8"


def status_for(code: str) -> int:
    """The HTTP status of an envelope's ``error.code``; an unknown code is a 500."""
    return openapi.STATUS_OF_CODE.get(code, 500)


def json_response(
    body: Any, status: int = 200, dumps: Callable[[Any], str] = json.dumps
) -> Response:
    return Response(status, [("Content-Type", JSON)], dumps(body).encode())


def envelope_error(code: str, message: str, status: int | None = None) -> Response:
    """An error envelope; its HTTP status follows ``code`` unless ``status`` is given."""
    body = {"ok": False, "error": {"code": code, "message": message}}
    response = json_response(body, status=status or status_for(code))
    if code == "unauthorized":
        response.headers.append(("WWW-Authenticate", 'Bearer realm="rosey"'))
    return response


def server_error(status: int, message: str) -> Response:
    """The envelope of a request the server refused before the face saw it (``server.py``):
    ``413``/``431`` too large, ``503`` too many connections, else a malformed request."""
    code = "too_large" if status in (413, 431) else "internal" if status == 500 else "bad_request"
    return secured(envelope_error(code, message, status))


def secured(response: Response) -> Response:
    """The headers every reply but the event stream carries."""
    if response.header("Cache-Control") is None:
        response.headers.append(("Cache-Control", "no-store"))
    response.set_header("X-Content-Type-Options", "nosniff")
    response.set_header("Referrer-Policy", "no-referrer")  # the page URL has the token
    return response


def dashboard_page() -> tuple[str, str]:
    """The dashboard page with its script and style inlined, and its Content-Security-Policy.

    Inlined, so opening ``/?token=`` is the only request made without the header; the policy
    allows exactly these inline blocks (by hash) and requests to this server, nothing else.
    """
    folder = Path(__file__).with_name("static")  # package data (pyproject.toml), a plain folder
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


def parse_body(data: bytes) -> dict[str, Any]:
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


def dumps_any(value: Any) -> str:
    """JSON of a result; what JSON has no type for (a path, a time) as its text."""
    return json.dumps(value, default=str)
