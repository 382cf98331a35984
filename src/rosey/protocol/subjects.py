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
