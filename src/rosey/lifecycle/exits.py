"""What a plugin run's end means, as pure values: the event, the words, the restart wording.

The supervisor's life task awaits the process and then asks here: which lifecycle event the end
is (``start_failed``, ``crashed``, ``exited_ok``), what to log and keep as ``last_error``, which
marker to write in the plugin's log, and whether it counts as a failure for the restart policy
(``rosey.lifecycle.policy.should_restart``). Nothing here reads a clock or touches a process.
"""

from __future__ import annotations

from dataclasses import dataclass

from rosey.errors import describe_exit
from rosey.lifecycle.states import Event, exit_event

__all__ = ["ExitFacts", "ExitVerdict", "after_exit", "end_marker", "restart_reason"]


@dataclass(frozen=True)
class ExitFacts:
    """How a run ended without a stop request (what ``rosey.manager.launch.Ended`` holds)."""

    returncode: int | None
    #: Why it never became ready (the whole error text, its first line is the summary).
    start_error: str | None = None
    #: Why the manager killed it for its health (set before the kill): a crash, not a stop.
    kill_reason: str | None = None
    #: The resource limit the kernel held it to when it ended (OOM kill, refused forks).
    limit_reason: str | None = None


@dataclass(frozen=True)
class ExitVerdict:
    """What the supervisor does with an end: apply ``event`` with ``reason``, keep ``error``."""

    event: Event
    #: The transition's reason (one line).
    reason: str
    #: The new ``last_error``, or None to keep the old one (a clean exit).
    error: str | None
    #: Whether the last stderr lines belong after ``error`` (a crash; a start error has them).
    error_wants_tail: bool
    #: A failure for the restart policy (``on-failure``), whatever the exit code.
    failed: bool
    #: The marker line in the plugin's log.
    marker: str


def after_exit(facts: ExitFacts) -> ExitVerdict:
    """The verdict on one run's end: a failed start, a health kill, or the process's exit."""
    limit = f": {facts.limit_reason}" if facts.limit_reason else ""
    marker = end_marker(facts)
    if facts.start_error is not None:
        first_line = facts.start_error.splitlines()[0]
        return ExitVerdict(
            Event.START_FAILED,
            first_line + limit,
            facts.start_error + limit,
            error_wants_tail=False,
            failed=True,
            marker=marker,
        )
    if facts.kill_reason is not None:
        return ExitVerdict(
            Event.CRASHED,
            f"crashed ({facts.kill_reason})",
            facts.kill_reason,
            error_wants_tail=True,
            failed=True,
            marker=marker,
        )
    if facts.returncode is None:
        raise ValueError("a run that ended on its own has a return code")
    event = exit_event(facts.returncode, stop_requested=False)
    failed = event is Event.CRASHED
    what = f"{'crashed' if failed else 'exited'} ({describe_exit(facts.returncode)}){limit}"
    return ExitVerdict(
        event,
        what,
        what if failed else None,
        error_wants_tail=failed,
        failed=failed,
        marker=marker,
    )


def end_marker(facts: ExitFacts) -> str:
    """How a run that was not asked to stop ended, in the words of the state log."""
    code = facts.returncode
    if facts.start_error is not None:
        return "failed to start" + (f" ({describe_exit(code)})" if code is not None else "")
    if facts.kill_reason is not None:
        return f"crashed ({facts.kill_reason})"
    code = code or 0
    failed = exit_event(code, stop_requested=False) is Event.CRASHED
    return f"{'crashed' if failed else 'exited'} ({describe_exit(code)})"


def restart_reason(facts: ExitFacts, restart_count: int) -> str:
    """The reason of the ``restart_due`` that follows the backoff (the restart's number)."""
    what = "its start failed" if facts.start_error else describe_exit(facts.returncode or 0)
    if facts.kill_reason:
        what = "a failed health check"
    return f"restart {restart_count} after {what}"
