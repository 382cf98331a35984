"""The lifecycle state table: every (state, event) pair either moves as specified or raises."""

from __future__ import annotations

import itertools
import re
import runpy
import sys

import pytest

from rosey.errors import InvalidTransition, RoseyError
from rosey.lifecycle import diagram
from rosey.lifecycle.states import (
    INITIAL_STATE,
    PROCESS_STATES,
    TRANSITIONS,
    Event,
    State,
    allowed_events,
    exit_event,
    render_mermaid,
    transition,
)

S, E = State, Event

#: The specification, written out independently of the module's table.
EXPECTED: dict[tuple[State, Event], State] = {
    (S.STOPPED, E.START_REQUESTED): S.STARTING,
    (S.STOPPED, E.RESTART_DUE): S.STARTING,
    (S.STOPPED, E.DISABLE): S.DISABLED,
    (S.STOPPED, E.DEPENDENCY_FAILED): S.STOPPED,
    (S.STARTING, E.READY): S.RUNNING,
    (S.STARTING, E.START_FAILED): S.CRASHED,
    (S.STARTING, E.CRASHED): S.CRASHED,
    (S.STARTING, E.EXITED_OK): S.STOPPED,
    (S.STARTING, E.STOP_REQUESTED): S.STOPPING,
    (S.RUNNING, E.HEALTH_FAILED): S.UNHEALTHY,
    (S.RUNNING, E.CRASHED): S.CRASHED,
    (S.RUNNING, E.EXITED_OK): S.STOPPED,
    (S.RUNNING, E.STOP_REQUESTED): S.STOPPING,
    (S.UNHEALTHY, E.HEALTH_RECOVERED): S.RUNNING,
    (S.UNHEALTHY, E.CRASHED): S.CRASHED,
    (S.UNHEALTHY, E.EXITED_OK): S.STOPPED,
    (S.UNHEALTHY, E.STOP_REQUESTED): S.STOPPING,
    (S.CRASHED, E.RESTART_DUE): S.STARTING,
    (S.CRASHED, E.START_REQUESTED): S.STARTING,
    (S.CRASHED, E.CRASH_LOOP): S.DISABLED,
    (S.CRASHED, E.STOP_REQUESTED): S.STOPPED,
    (S.CRASHED, E.DISABLE): S.DISABLED,
    (S.CRASHED, E.DEPENDENCY_FAILED): S.STOPPED,
    (S.STOPPING, E.STOPPED): S.STOPPED,
    (S.DISABLED, E.ENABLE): S.STOPPED,
}

ALL_PAIRS = list(itertools.product(State, Event))


def test_states_are_exactly_the_design_list() -> None:
    assert [str(s) for s in State] == [
        "stopped",
        "starting",
        "running",
        "unhealthy",
        "crashed",
        "stopping",
        "disabled",
    ]


def test_table_is_the_specification() -> None:
    assert dict(TRANSITIONS) == EXPECTED


@pytest.mark.parametrize(("state", "event"), ALL_PAIRS, ids=lambda v: str(v))
def test_every_pair_moves_or_raises(state: State, event: Event) -> None:
    if (state, event) in EXPECTED:
        assert transition(state, event) is EXPECTED[(state, event)]
    else:
        with pytest.raises(InvalidTransition) as caught:
            transition(state, event)
        assert caught.value.state == state
        assert caught.value.event == event
        assert caught.value.allowed == list(allowed_events(state))
        assert caught.value.code == "invalid_state"
        assert isinstance(caught.value, RoseyError)


def test_table_cannot_be_changed_at_runtime() -> None:
    with pytest.raises(TypeError):
        TRANSITIONS[(S.DISABLED, E.START_REQUESTED)] = S.STARTING  # type: ignore[index]


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (S.STOPPED, (E.START_REQUESTED, E.RESTART_DUE, E.DISABLE, E.DEPENDENCY_FAILED)),
        (S.STOPPING, (E.STOPPED,)),
        (S.DISABLED, (E.ENABLE,)),
    ],
)
def test_allowed_events_in_event_order(state: State, expected: tuple[Event, ...]) -> None:
    assert allowed_events(state) == expected


def test_invalid_transition_message_names_state_event_and_choices() -> None:
    with pytest.raises(InvalidTransition) as caught:
        transition(S.DISABLED, E.START_REQUESTED)
    assert str(caught.value) == (
        "lifecycle event 'start_requested' does not apply in state 'disabled'; "
        "events allowed in disabled: enable"
    )


def test_invalid_transition_without_choices() -> None:
    assert str(InvalidTransition("limbo", "poke")) == (
        "lifecycle event 'poke' does not apply in state 'limbo'; no event is allowed in limbo"
    )


@pytest.mark.parametrize(
    ("label", "events", "end"),
    [
        (
            "normal start and stop",
            [E.START_REQUESTED, E.READY, E.STOP_REQUESTED, E.STOPPED],
            S.STOPPED,
        ),
        (
            "crash then restart",
            [E.START_REQUESTED, E.READY, E.CRASHED, E.RESTART_DUE, E.READY],
            S.RUNNING,
        ),
        ("crash loop", [E.START_REQUESTED, E.START_FAILED, E.CRASH_LOOP], S.DISABLED),
        (
            "unhealthy recovers",
            [E.START_REQUESTED, E.READY, E.HEALTH_FAILED, E.HEALTH_RECOVERED],
            S.RUNNING,
        ),
        ("unhealthy killed", [E.START_REQUESTED, E.READY, E.HEALTH_FAILED, E.CRASHED], S.CRASHED),
        (
            "clean exit, policy always",
            [E.START_REQUESTED, E.READY, E.EXITED_OK, E.RESTART_DUE],
            S.STARTING,
        ),
        ("disable and enable", [E.DISABLE, E.ENABLE, E.START_REQUESTED], S.STARTING),
        ("stop cancels restart", [E.START_REQUESTED, E.CRASHED, E.STOP_REQUESTED], S.STOPPED),
        ("stop while starting", [E.START_REQUESTED, E.STOP_REQUESTED, E.STOPPED], S.STOPPED),
    ],
)
def test_sequences(label: str, events: list[Event], end: State) -> None:
    state = INITIAL_STATE
    for event in events:
        state = transition(state, event)
    assert state is end, label


def test_every_state_is_reachable_and_can_be_left() -> None:
    reached = {INITIAL_STATE}
    frontier = [INITIAL_STATE]
    while frontier:
        state = frontier.pop()
        for event in allowed_events(state):
            target = transition(state, event)
            if target not in reached:
                reached.add(target)
                frontier.append(target)
    assert reached == set(State)
    assert all(any(t != s for (s, _), t in TRANSITIONS.items() if s == state) for state in State)


def test_events_about_a_process_only_apply_while_there_is_one() -> None:
    process_events = {E.READY, E.START_FAILED, E.EXITED_OK, E.CRASHED, E.HEALTH_FAILED}
    process_events |= {E.HEALTH_RECOVERED, E.STOPPED}
    sources = {s for (s, e) in TRANSITIONS if e in process_events}
    assert sources <= PROCESS_STATES
    assert {S.STARTING, S.RUNNING, S.UNHEALTHY, S.STOPPING} == PROCESS_STATES


def test_only_enable_leaves_disabled() -> None:
    assert allowed_events(S.DISABLED) == (E.ENABLE,)
    assert transition(S.DISABLED, E.ENABLE) is S.STOPPED


@pytest.mark.parametrize(
    ("returncode", "stop_requested", "expected"),
    [
        (0, False, E.EXITED_OK),
        (1, False, E.CRASHED),
        (-9, False, E.CRASHED),
        (0, True, E.STOPPED),
        (1, True, E.STOPPED),
        (-9, True, E.STOPPED),
    ],
)
def test_exit_event(returncode: int, stop_requested: bool, expected: Event) -> None:
    assert exit_event(returncode, stop_requested) is expected


_EDGE = re.compile(r"^    (\w+) --> (\w+): (.+)$")


def test_mermaid_round_trips_the_table() -> None:
    lines = render_mermaid().splitlines()
    assert lines[0] == "stateDiagram-v2"
    assert lines[1] == "    [*] --> stopped"
    rebuilt: dict[tuple[State, Event], State] = {}
    for line in lines[2:]:
        match = _EDGE.match(line)
        assert match is not None, line
        source, target, events = match.groups()
        for event in events.split(", "):
            assert (State(source), Event(event)) not in rebuilt
            rebuilt[(State(source), Event(event))] = State(target)
    assert rebuilt == EXPECTED
    assert len(lines) - 2 == len({(s, t) for (s, _), t in EXPECTED.items()})  # one line per edge


def test_diagram_main_prints_the_diagram(capsys: pytest.CaptureFixture[str]) -> None:
    assert diagram.main([]) == 0
    assert capsys.readouterr().out == render_mermaid()


def test_diagram_main_markdown(capsys: pytest.CaptureFixture[str]) -> None:
    assert diagram.main(["--markdown"]) == 0
    assert capsys.readouterr().out == f"```mermaid\n{render_mermaid()}```\n"


def test_diagram_main_rejects_unknown_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert diagram.main(["--svg"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "usage:" in captured.err


def test_diagram_runs_as_module(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["diagram"])
    monkeypatch.delitem(sys.modules, "rosey.lifecycle.diagram", raising=False)
    with pytest.raises(SystemExit) as caught:
        runpy.run_module("rosey.lifecycle.diagram", run_name="__main__")
    assert caught.value.code == 0
    assert capsys.readouterr().out.startswith("stateDiagram-v2\n")
