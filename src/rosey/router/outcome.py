"""What one dispatched command comes to: the chat text and the outcome's error (pure).

The router sends a request to the plugin and gets a reply or an error; these functions turn
either into ``(error, text)``: ``error`` is None for a success and goes into the published
``rosey.commands.<plugin>.result|error`` outcome (the manager's error rate), ``text`` is what
the user reads (None or empty: nothing is said). A plugin chooses its error text, so it is
bounded and cleaned of terminal escapes before it is shown or published.
"""

from __future__ import annotations

from typing import NamedTuple

from rosey.errors import BusError, DecodeError, NoResponders, RequestTimeout
from rosey.protocol import wire
from rosey.protocol.text import clean

__all__ = ["MAX_OUTCOME_ERROR", "Verdict", "from_failure", "from_reply", "outcome"]

#: An error text kept in a published outcome at most (a plugin chooses it).
MAX_OUTCOME_ERROR = 500


class Verdict(NamedTuple):
    """``error`` for the outcome (None: it worked), ``text`` for the chat (None: say nothing)."""

    error: str | None
    text: str | None


def from_reply(command: str, reply: wire.CommandReply) -> Verdict:
    """A reply the plugin gave: its text, or its error, bounded and cleaned."""
    if reply["ok"]:
        return Verdict(None, reply["text"])
    error = clean((reply["error"] or "failed")[:MAX_OUTCOME_ERROR], one_line=True)
    return Verdict(error, f"!{command}: {error}")


def from_failure(command: str, plugin: str, exc: Exception, timeout: float) -> Verdict:
    """No usable reply: why, for the outcome and for the user."""
    if isinstance(exc, RequestTimeout):
        return Verdict(
            f"no answer within {timeout:g} s", f"!{command}: {plugin} did not answer in time"
        )
    if isinstance(exc, NoResponders):
        return Verdict("not listening", f"!{command}: plugin {plugin} is not running")
    if isinstance(exc, DecodeError):
        # Not JSON, nested too deep, wrong fields: the plugin's fault, counted as its error.
        return Verdict(
            f"unusable reply: {exc.problem}",
            f"!{command}: {plugin} gave no usable answer ({exc.problem})",
        )
    if isinstance(exc, BusError):
        return Verdict(str(exc), f"!{command}: {plugin} gave no usable answer")
    # A bug of ours must still end in a reply and an outcome, never a silent task death.
    name = type(exc).__name__
    return Verdict(
        f"internal error in the router: {name}", f"!{command}: failed inside the bot ({name})"
    )


def outcome(
    command: str, correlation_id: str, duration_ms: float, error: str | None
) -> wire.CommandOutcome:
    """The body published on ``.result`` (error None) or ``.error``."""
    return {
        "command": command,
        "correlation_id": correlation_id,
        "duration_ms": round(duration_ms, 3),
        "error": error,
    }
