"""The plugin lifecycle as one table: states, events, and (state, event) → next state.

Everything the manager may do to a plugin's state goes through :func:`transition`; a pair that
is not in :data:`TRANSITIONS` raises :class:`~rosey.errors.InvalidTransition`, so an impossible
move (start a disabled plugin, ``ready`` after a crash) is a loud error, not a silent state.
The operator docs' state diagram is generated from the same table (:func:`render_mermaid`).

Who decides *which* event to send is not in here: the restart policy, backoff and crash window
live in :mod:`rosey.lifecycle.policy`, dependency checks in :mod:`rosey.plugins.graph`.
The manager's usual sequences:

- start: ``start_requested`` (dependencies checked before), then ``ready``, or ``start_failed``
  (start timeout, on_start raised; the manager has killed what was left), or an exit event.
- process exit: :func:`exit_event` picks ``stopped`` / ``exited_ok`` / ``crashed``. After
  ``crashed`` the manager records the crash; a crash loop sends ``crash_loop`` (→ disabled),
  otherwise a restart the policy allows is a ``restart_due`` once the backoff has elapsed.
- health: ``health_failed`` (failure threshold, resource limit, error rate) → unhealthy;
  ``health_recovered`` goes back; killing an unhealthy plugin is reported by its exit, ``crashed``.
- stop / restart / disable of a live plugin: ``stop_requested``, ``stopped``, then
  ``start_requested`` or ``disable``. Disable only applies once no process is left.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType

from rosey.errors import InvalidTransition

__all__ = [
    "AT_REST",
    "INITIAL_STATE",
    "PROCESS_STATES",
    "STOPPABLE",
    "TRANSITIONS",
    "UP",
    "Event",
    "State",
    "accepts",
    "allowed_events",
    "exit_event",
    "render_mermaid",
    "transition",
]


class State(StrEnum):
    """Where a plugin is (DESIGN 2.6 ``state``)."""

    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    UNHEALTHY = "unhealthy"
    CRASHED = "crashed"
    STOPPING = "stopping"
    DISABLED = "disabled"


class Event(StrEnum):
    """Something that happened to a plugin, or that the manager decided."""

    #: An operator, ``start_all`` or a dependent's start asked for it (deps already checked).
    START_REQUESTED = "start_requested"
    #: The plugin announced readiness.
    READY = "ready"
    #: Not ready in time, or ``on_start`` failed; the manager has killed what was left.
    START_FAILED = "start_failed"
    #: The process ended on its own with exit code 0.
    EXITED_OK = "exited_ok"
    #: The process ended on its own with a non-zero code or a signal.
    CRASHED = "crashed"
    #: Health checks failed ``failure_threshold`` times, a resource limit or the error rate hit.
    HEALTH_FAILED = "health_failed"
    #: A health check passed again while unhealthy.
    HEALTH_RECOVERED = "health_recovered"
    #: An operator, ``stop_all``, a dependency's stop or a restart asked it to stop.
    STOP_REQUESTED = "stop_requested"
    #: The process is gone after a stop request (whatever its exit code).
    STOPPED = "stopped"
    #: The backoff delay elapsed and the restart policy wants the plugin back.
    RESTART_DUE = "restart_due"
    #: More crashes than allowed within the crash window: give up until ``enable``.
    CRASH_LOOP = "crash_loop"
    #: An operator (or the config's ``enabled: false``) disabled it.
    DISABLE = "disable"
    #: An operator enabled it again; the crash window starts empty.
    ENABLE = "enable"
    #: A dependency is missing, on a cycle or not running: it cannot start (reason kept).
    DEPENDENCY_FAILED = "dependency_failed"


_S, _E = State, Event

_TABLE: dict[State, dict[Event, State]] = {
    _S.STOPPED: {
        _E.START_REQUESTED: _S.STARTING,
        _E.RESTART_DUE: _S.STARTING,  # restart_policy "always" after a clean exit
        _E.DISABLE: _S.DISABLED,
        _E.DEPENDENCY_FAILED: _S.STOPPED,  # stays stopped; the event carries the reason
    },
    _S.STARTING: {
        _E.READY: _S.RUNNING,
        _E.START_FAILED: _S.CRASHED,
        _E.CRASHED: _S.CRASHED,
        _E.EXITED_OK: _S.STOPPED,
        _E.STOP_REQUESTED: _S.STOPPING,
    },
    _S.RUNNING: {
        _E.HEALTH_FAILED: _S.UNHEALTHY,
        _E.CRASHED: _S.CRASHED,
        _E.EXITED_OK: _S.STOPPED,
        _E.STOP_REQUESTED: _S.STOPPING,
    },
    _S.UNHEALTHY: {
        _E.HEALTH_RECOVERED: _S.RUNNING,
        _E.CRASHED: _S.CRASHED,
        _E.EXITED_OK: _S.STOPPED,
        _E.STOP_REQUESTED: _S.STOPPING,
    },
    _S.CRASHED: {
        _E.RESTART_DUE: _S.STARTING,
        _E.START_REQUESTED: _S.STARTING,  # an operator does not wait for the backoff
        _E.CRASH_LOOP: _S.DISABLED,
        _E.STOP_REQUESTED: _S.STOPPED,  # no process left: cancels the pending restart
        _E.DISABLE: _S.DISABLED,
        _E.DEPENDENCY_FAILED: _S.STOPPED,  # cancels the pending restart
    },
    _S.STOPPING: {
        _E.STOPPED: _S.STOPPED,
    },
    _S.DISABLED: {
        _E.ENABLE: _S.STOPPED,
    },
}

#: Every allowed move; anything else raises ``InvalidTransition``.
TRANSITIONS: Mapping[tuple[State, Event], State] = MappingProxyType(
    {(state, event): target for state, row in _TABLE.items() for event, target in row.items()}
)

#: A new plugin (and the bot at start) begins here.
INITIAL_STATE = State.STOPPED

#: States in which the plugin has a live process the manager owns.
PROCESS_STATES: frozenset[State] = frozenset(
    {State.STARTING, State.RUNNING, State.UNHEALTHY, State.STOPPING}
)


#: States in which the plugin answers commands: those its health checks move between
#: (``running`` ⇄ ``unhealthy``).
UP: frozenset[State] = frozenset(
    state
    for (state, event) in TRANSITIONS
    if event in (Event.HEALTH_FAILED, Event.HEALTH_RECOVERED)
)

#: States with a process a stop request has to end (the request moves them to ``stopping``).
STOPPABLE: frozenset[State] = frozenset(
    state
    for (state, event), target in TRANSITIONS.items()
    if event is Event.STOP_REQUESTED and target is State.STOPPING
)

#: States without a process: what a plugin is in once nothing of it runs.
AT_REST: frozenset[State] = frozenset(State) - PROCESS_STATES


def accepts(state: State, event: Event) -> bool:
    """Whether the table has a move for ``event`` in ``state``."""
    return (state, event) in TRANSITIONS


def allowed_events(state: State) -> tuple[Event, ...]:
    """The events ``state`` accepts, in ``Event`` order."""
    return tuple(event for event in Event if (state, event) in TRANSITIONS)


def transition(state: State, event: Event) -> State:
    """The state after ``event`` in ``state``; ``InvalidTransition`` if the table has no entry."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise InvalidTransition(state, event, allowed_events(state)) from None


def exit_event(returncode: int, stop_requested: bool) -> Event:
    """The event for a process exit: ``stopped`` after a stop request, else by exit code.

    ``returncode`` is the subprocess convention: negative means killed by that signal.
    """
    if stop_requested:
        return Event.STOPPED
    return Event.EXITED_OK if returncode == 0 else Event.CRASHED


def render_mermaid() -> str:
    """The table as a Mermaid ``stateDiagram-v2``; events sharing an edge share its label."""
    edges: dict[tuple[State, State], list[Event]] = {}
    for state in State:
        for event in allowed_events(state):
            edges.setdefault((state, TRANSITIONS[(state, event)]), []).append(event)
    lines = ["stateDiagram-v2", f"    [*] --> {INITIAL_STATE}"]
    for (source, target), events in edges.items():
        lines.append(f"    {source} --> {target}: {', '.join(events)}")
    return "\n".join(lines) + "\n"
