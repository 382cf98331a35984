"""The only place that builds subject strings (DESIGN 2.4).

Every builder validates its tokens: a plugin name or platform holding ``.``, ``*``, ``>`` or
whitespace would silently address other subjects, so it is refused with ``SubjectError``.
"""

from __future__ import annotations

import re

from rosey.errors import SubjectError

ROOT = "rosey"
EVENTS_MESSAGE = "rosey.events.message"
EVENTS_ALL = "rosey.events.>"
SECURITY_VIOLATION = "rosey.security.violation"
SECURITY_ALL = "rosey.security.>"
MANAGER_ALL = "rosey.manager.>"
MANAGER_ACTIONS = "rosey.manager.*"  # every management request (not the .events.> below)
MANAGER_EVENTS_ALL = "rosey.manager.events.>"
PLATFORM_SEND_ANY = "rosey.platform.*.send"
COMMANDS_RESULTS_ALL = "rosey.commands.*.result"
COMMANDS_ERRORS_ALL = "rosey.commands.*.error"

_FORBIDDEN = re.compile(r"[.*>\s]")


def token(value: str, what: str = "token") -> str:
    """Return ``value`` if it can stand as one subject token, else raise ``SubjectError``."""
    if not isinstance(value, str) or not value:
        raise SubjectError(str(value), f"{what} must be a non-empty string")
    bad = _FORBIDDEN.search(value)
    if bad is not None:
        raise SubjectError(
            value,
            f"{what} may not contain {bad.group()!r} "
            "('.', '*', '>' and whitespace are not allowed)",
        )
    return value


def platform_send(platform: str) -> str:
    """Where a connector reads the messages it must send to its chat network."""
    return f"rosey.platform.{token(platform, 'platform')}.send"


def command_execute(plugin: str) -> str:
    """Router → plugin request subject for the plugin's chat commands."""
    return f"rosey.commands.{token(plugin, 'plugin name')}.execute"


def command_result(plugin: str) -> str:
    return f"rosey.commands.{token(plugin, 'plugin name')}.result"


def command_error(plugin: str) -> str:
    return f"rosey.commands.{token(plugin, 'plugin name')}.error"


def plugin_event(plugin: str, event: str) -> str:
    """A plugin's own event; ``event`` may be dotted (``round.started``), each part a token."""
    parts = event.split(".") if isinstance(event, str) else [event]
    for part in parts:
        token(part, "event name part")
    return f"rosey.plugins.{token(plugin, 'plugin name')}.{event}"


def plugin_events_all(plugin: str) -> str:
    return f"rosey.plugins.{token(plugin, 'plugin name')}.>"


def manager_action(action: str) -> str:
    return f"rosey.manager.{token(action, 'action')}"


def manager_events(plugin: str) -> str:
    return f"rosey.manager.events.{token(plugin, 'plugin name')}"


def health_ping(plugin: str) -> str:
    """Manager → plugin health ping (request/reply). Internal to Rosey."""
    return f"rosey.health.{token(plugin, 'plugin name')}.ping"


def plugin_inbox_prefix(plugin: str) -> str:
    """Reply inbox prefix of a plugin's own connection; allowed to it alone."""
    return f"_INBOX_{token(plugin, 'plugin name')}"


# Fixed reply inboxes (DESIGN 3: replies must keep working across server config reloads, so
# plugins get publish rights on these prefixes instead of ``allow_responses``). Upper case on
# purpose: plugin names are lower case (DESIGN 2.2), so no plugin's ``_INBOX_<name>`` can be one
# of these, not even for a plugin named ``manager`` or ``router``.
MANAGER_INBOX_PREFIX = "_INBOX_MANAGER"
ROUTER_INBOX_PREFIX = "_INBOX_ROUTER"


#: Where the broker maps a service import's reply subject in the exporting account
#: (``_R_.<random>.<random>``). With an account per plugin every request that crosses into a
#: plugin's account arrives with such a reply, and the reply travels back through the import.
SERVICE_REPLY_PREFIX = "_R_"

_INBOX_REPLY = re.compile(r"_INBOX(?:_(?:[a-z][a-z0-9_]{0,31}|MANAGER|ROUTER))?\.[^\s*>]+")
_SERVICE_REPLY = re.compile(r"_R_\.[^\s*>]+")


def is_answerable_reply(reply: str) -> bool:
    """Whether a plugin may publish its answer to ``reply``.

    Only the kinds of reply subject the core and granted callers use: a broker-mapped service
    reply (``_R_.…``, every cross-account request on the embedded broker), the core's fixed
    inboxes, a plugin's own inbox and a NATS client's default ``_INBOX.`` (an external server,
    tools, the test harness: callers there reply-to their inbox). Inboxes are never a Rosey
    subject, so answering one cannot act on anything. Anything else (``rosey.manager.stop``) is
    a reply subject chosen to make the callee publish where it may not: it gets no answer.
    """
    return bool(_SERVICE_REPLY.fullmatch(reply) or _INBOX_REPLY.fullmatch(reply))


def inbox_all(prefix: str) -> str:
    """Every reply subject under an inbox prefix: ``<prefix>.>``."""
    return f"{token(prefix, 'inbox prefix')}.>"


def plugin_inbox_all(plugin: str) -> str:
    """Every reply subject of a plugin's own connection: ``_INBOX_<plugin>.>``."""
    return inbox_all(plugin_inbox_prefix(plugin))


# JetStream key-value storage (grant ``storage``): one bucket per plugin, ``rosey_<plugin>``,
# kept in the stream ``KV_rosey_<plugin>`` (nats-py's naming: ``nats/js/client.py``).
JS_API_INFO = "$JS.API.INFO"


def kv_bucket(plugin: str) -> str:
    """A plugin's key-value bucket name."""
    return f"rosey_{token(plugin, 'plugin name')}"


def kv_stream(plugin: str) -> str:
    """The JetStream stream behind a plugin's bucket."""
    return f"KV_{kv_bucket(plugin)}"


def kv_keys_all(plugin: str) -> str:
    """Every key of a plugin's bucket (what ``put``/``delete``/``purge`` publish to)."""
    return f"$KV.{kv_bucket(plugin)}.>"


def js_stream_api(operation: str, plugin: str, *, wildcard: bool = False) -> str:
    """``$JS.API.<operation>.KV_rosey_<plugin>`` (``.>`` appended with ``wildcard``).

    ``operation`` is dotted, e.g. ``STREAM.INFO`` or ``DIRECT.GET``; each part is a token.
    """
    for part in operation.split("."):
        token(part, "JetStream API operation part")
    subject = f"$JS.API.{operation}.{kv_stream(plugin)}"
    return f"{subject}.>" if wildcard else subject


def js_flow_control(plugin: str) -> str:
    """Flow-control replies of push consumers on a plugin's bucket (``$JS.FC.<stream>.>``)."""
    return f"$JS.FC.{kv_stream(plugin)}.>"


# Plugin-to-plugin calls on the embedded broker go through the core: the caller's account
# imports ``rosey.relay.<caller>.<callee>`` from the core account as its local
# ``rosey.commands.<callee>.execute``, so the core learns the caller from the subject the broker
# delivered it on and sets the request's user and platform itself (the caller cannot choose them).
RELAY_ALL = "rosey.relay.*.*"


def relay(caller: str, callee: str) -> str:
    """The core's relay subject for calls from ``caller`` to ``callee``."""
    return f"rosey.relay.{token(caller, 'plugin name')}.{token(callee, 'plugin name')}"


def relay_of_caller(caller: str) -> str:
    """Every relay subject of one caller (what the core exports to that caller's account)."""
    return f"rosey.relay.{token(caller, 'plugin name')}.>"


def parse_relay(subject: str) -> tuple[str, str] | None:
    """``(caller, callee)`` of a relay subject, None if ``subject`` is not one."""
    parts = subject.split(".")
    if len(parts) != 4 or parts[:2] != ["rosey", "relay"] or not all(parts[2:]):
        return None
    return parts[2], parts[3]


# Connectors (DESIGN 2.9; rosey.sdk.connector, rosey.security.connector_relay): a connector
# publishes on its own ``rosey.plugins.<instance>.connector.<kind>`` and the core relays onto
# ``rosey.events.<kind>`` with the instance's platform and channel; the core forwards the sends
# for an instance to ``rosey.connectors.<instance>.send``, which that instance's account alone
# imports, as its local ``CONNECTOR_SEND_LOCAL``.
CONNECTOR_SEND_LOCAL = "rosey.connector.send"


def connector_send(instance: str) -> str:
    """Where the core forwards the sends meant for connector ``instance``."""
    return f"rosey.connectors.{token(instance, 'connector instance')}.send"


def connector_events_all(instance: str) -> str:
    """Every event a connector instance reports (before the core relays it)."""
    return f"rosey.plugins.{token(instance, 'connector instance')}.connector.>"
