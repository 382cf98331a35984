"""The OpenAPI 3.1 description of the HTTP face (``GET /api/openapi.json``).

Built from the same things the routes use (the action registry, the request limits, the
error-code → status table), so it cannot name an action the server lacks. The test suite
fuzzes the live bot from this description (schemathesis): a response the description does not
allow is a failure.
"""

from __future__ import annotations

from typing import Any

from rosey.api.actions.logs import MAX_LINES
from rosey.lifecycle.states import State
from rosey.manager import status

#: The HTTP status of each ``error.code`` (DESIGN 2.11); any other code is a 500.
STATUS_OF_CODE: dict[str, int] = {
    "bad_request": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "invalid_state": 409,
    "dependency": 409,
    "rolled_back": 409,
    "confirmation_needed": 409,
    "too_large": 413,
    "internal": 500,
}
#: The longest request body accepted (POST bodies are at most a small JSON object).
MAX_BODY_BYTES = 64 * 1024

_NULLABLE_INT: dict[str, Any] = {"type": ["integer", "null"]}
_NULLABLE_NUMBER: dict[str, Any] = {"type": ["number", "null"]}
_STRINGS: dict[str, Any] = {"type": "array", "items": {"type": "string"}}

#: The keys of STATUS (DESIGN 2.6) every reply has; ``kind`` and the extras may be absent.
STATUS_KEYS = tuple(key for key in status.STATUS_KEYS if key != "kind")

STATUS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "STATUS of DESIGN 2.6 (and the extra fields every face shows).",
    "required": list(STATUS_KEYS),
    "properties": {
        "name": {"type": "string"},
        "version": {"type": "string"},
        "state": {"type": "string", "enum": [str(s) for s in State]},
        "enabled": {"type": "boolean"},
        "critical": {"type": "boolean"},
        "uptime_seconds": {"type": "number"},
        "crash_count": {"type": "integer"},
        "restart_count": {"type": "integer"},
        "error_rate": {"type": "number"},
        "dependencies": _STRINGS,
        "dependents": _STRINGS,
        "last_exit_code": _NULLABLE_INT,
        "last_error": {"type": ["string", "null"]},
        "next_restart_in": _NULLABLE_NUMBER,
        "stats": {
            "type": "object",
            "required": ["running", "pid", "cpu_percent", "memory_mb"],
            "properties": {
                "running": {"type": "boolean"},
                "pid": _NULLABLE_INT,
                "cpu_percent": {"type": "number"},
                "memory_mb": {"type": "number"},
            },
        },
        "permissions": _STRINGS,
        "enforced": {"type": "boolean"},
        "kind": {"type": "string", "enum": ["plugin", "connector"]},
        "started": {"type": "string", "enum": ["forked", "spawned"]},
    },
}


def _ok(result: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["ok", "result"],
        "properties": {"ok": {"const": True}, "result": result},
        "additionalProperties": False,
    }


ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["ok", "error"],
    "properties": {
        "ok": {"const": False},
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "enum": sorted(STATUS_OF_CODE)},
                "message": {"type": "string"},
            },
        },
    },
    "additionalProperties": False,
}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    words = {
        400: "bad_request: a malformed request (the message names the field)",
        401: "no token, or a wrong one",
        403: "forbidden",
        404: "not_found: no such plugin, action or path",
        409: "invalid_state, dependency, rolled_back or confirmation_needed (install, update: "
        "accept the grants with yes): refused in the plugin's current state",
        413: "too_large: the body is over the limit",
        500: "internal: a bug (logged)",
    }
    error = {"$ref": "#/components/schemas/Error"}
    return {str(code): _json(error, words[code]) for code in (401, *statuses)}


_SOURCE = {
    "type": "string",
    "pattern": "^/.+",
    "maxLength": 4096,
    "description": "an absolute path on the bot's host: a plugin folder, .tar.gz or .zip",
}
_YES = {"type": "boolean", "description": "accept the grants it asks for"}
#: Actions whose POST takes fields beyond the name: a path (operation) each, with its body.
BODIES: dict[str, tuple[str, dict[str, Any]]] = {
    "install": (
        "Install a plugin (the path names it: the source must hold that plugin)",
        {"required": ["source"], "properties": {"source": _SOURCE, "yes": _YES}},
    ),
    "update": (
        "Update a plugin to the version in the source (reloaded without a restart)",
        {
            "required": ["source"],
            "properties": {
                "source": _SOURCE,
                "yes": _YES,
                "force": {"type": "boolean", "description": "allow a version not higher"},
            },
        },
    ),
    "remove": (
        "Stop a plugin and remove it (its data folder stays unless purge)",
        {"properties": {"purge": {"type": "boolean", "description": "delete its data too"}}},
    ),
}
#: The result of install, update, rollback and remove (``rosey.manager.installer``).
_CHANGE: dict[str, Any] = {
    "type": "object",
    "required": ["plugin", "action", "version", "previous", "report", "status"],
    "properties": {
        "plugin": {"type": "string"},
        "action": {"type": "string"},
        "version": {"type": ["string", "null"]},
        "previous": {"type": ["string", "null"]},
        "report": _STRINGS,
        "status": {"anyOf": [{"$ref": "#/components/schemas/Status"}, {"type": "null"}]},
    },
    "additionalProperties": False,
}

_NAME = {
    "name": "name",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "minLength": 1, "maxLength": 64},
    "description": "the plugin's name",
}


def _with_body(action: str) -> dict[str, Any]:
    """``POST /api/plugins/{name}/<action>`` of an action that takes a body (``BODIES``)."""
    summary, body = BODIES[action]
    schema = {"type": "object", **body, "additionalProperties": False}
    return {
        "post": {
            "operationId": action,
            "summary": summary,
            "parameters": [_NAME],
            "requestBody": {
                "required": "required" in body,
                "content": {"application/json": {"schema": schema}},
            },
            "responses": {
                "200": _json(_ok(_CHANGE), "what changed, once it has"),
                **_errors(400, 403, 404, 409, 413, 500),
            },
        }
    }


def build(actions: list[str], version: str) -> dict[str, Any]:
    """The description; ``actions`` are the names ``POST /api/plugins/{name}/{action}`` takes."""
    status_ref = {"$ref": "#/components/schemas/Status"}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Rosey management API",
            "version": version,
            "description": "The management actions of DESIGN 2.6 over HTTP (2.11). Every "
            "request needs `Authorization: Bearer <http_token from runtime.json>`.",
        },
        "servers": [{"url": "/"}],
        "security": [{"token": []}],
        "paths": {
            "/api/plugins": {
                "get": {
                    "operationId": "list",
                    "summary": "Every plugin's STATUS",
                    "responses": {
                        "200": _json(
                            _ok(
                                {
                                    "type": "object",
                                    "required": ["plugins"],
                                    "properties": {
                                        "plugins": {"type": "array", "items": status_ref}
                                    },
                                }
                            ),
                            "the plugins",
                        ),
                        **_errors(500),
                    },
                }
            },
            "/api/plugins/{name}": {
                "get": {
                    "operationId": "status",
                    "summary": "One plugin's STATUS",
                    "parameters": [_NAME],
                    "responses": {
                        "200": _json(_ok(status_ref), "the plugin"),
                        **_errors(400, 404, 500),
                    },
                }
            },
            "/api/plugins/{name}/logs": {
                "get": {
                    "operationId": "logs",
                    "summary": "The last lines of a plugin's log, or those after a cursor",
                    "parameters": [
                        _NAME,
                        {
                            "name": "lines",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LINES},
                        },
                        {
                            "name": "cursor",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "string", "pattern": r"^\d{1,20}:\d{1,20}$"},
                        },
                    ],
                    "responses": {
                        "200": _json(
                            _ok(
                                {
                                    "type": "object",
                                    "required": ["plugin", "lines", "cursor"],
                                    "properties": {
                                        "plugin": {"type": "string"},
                                        "lines": _STRINGS,
                                        "cursor": {"type": "string"},
                                    },
                                }
                            ),
                            "log lines, oldest first",
                        ),
                        **_errors(400, 404, 500),
                    },
                }
            },
            "/api/plugins/{name}/{action}": {
                "post": {
                    "operationId": "act",
                    "summary": "Run a mutating action; the reply comes once it has finished",
                    "parameters": [
                        _NAME,
                        {
                            "name": "action",
                            "in": "path",
                            "required": True,
                            "schema": {
                                "type": "string",
                                "enum": [a for a in actions if a not in BODIES],
                            },
                        },
                    ],
                    "requestBody": {
                        "required": False,
                        "description": "none, or an empty JSON object",
                        "content": {
                            "application/json": {
                                "schema": {"type": "object", "additionalProperties": False}
                            }
                        },
                    },
                    "responses": {
                        "200": _json(
                            _ok({"anyOf": [status_ref, _CHANGE]}),
                            "STATUS once the action has finished (rollback: what changed, "
                            "with STATUS)",
                        ),
                        **_errors(400, 403, 404, 409, 413, 500),
                    },
                }
            },
            **{f"/api/plugins/{{name}}/{a}": _with_body(a) for a in actions if a in BODIES},
            "/api/events": {
                "get": {
                    "operationId": "events",
                    "summary": "Server-sent events: state changes and security violations",
                    "description": "`event: state` (body of rosey.manager.events.<plugin>), "
                    "`event: violation` (body of rosey.security.violation), `event: gap` "
                    "(events may have been missed: refetch). Send `Last-Event-ID` to resume.",
                    "parameters": [
                        {
                            "name": "Last-Event-ID",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string", "maxLength": 64},
                        }
                    ],
                    "responses": {
                        "200": {
                            "description": "an endless event stream",
                            "content": {"text/event-stream": {"schema": {"type": "string"}}},
                        },
                        **_errors(),
                    },
                }
            },
            "/api/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This description",
                    "responses": {
                        "200": _json({"type": "object"}, "OpenAPI 3.1"),
                        **_errors(),
                    },
                }
            },
            "/metrics": {
                "get": {
                    "operationId": "metrics",
                    "summary": "Prometheus text format",
                    "responses": {
                        "200": {
                            "description": "metrics",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        },
                        **_errors(),
                    },
                }
            },
        },
        "components": {
            "securitySchemes": {"token": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Status": STATUS_SCHEMA, "Error": ERROR_SCHEMA},
        },
    }
