"""Namespaces around a plugin: the pure pieces as tables (the real waiter → init → plugin chain
runs in ``tests/integration/test_sandbox_namespace_chain.py``)."""

from __future__ import annotations

import os

import pytest

from rosey.sandbox import namespaces
from rosey.sandbox.namespaces import (
    CLONE_NEWIPC,
    CLONE_NEWPID,
    CLONE_NEWUSER,
    Outcome,
    Request,
    flags_for,
    id_map,
    layer_names,
    relay_plan,
    userns_refusal,
)
from rosey.sdk import confinement


@pytest.mark.parametrize(
    ("request_", "root", "flags"),
    [
        (Request(pid=True, ipc=True), True, CLONE_NEWPID | CLONE_NEWIPC),
        (Request(pid=True, ipc=True), False, CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWIPC),
        (Request(pid=True, ipc=False), True, CLONE_NEWPID),
        (Request(pid=False, ipc=True), False, CLONE_NEWUSER | CLONE_NEWIPC),
        (Request(pid=False, ipc=False), False, 0),  # no user namespace for nothing
        (Request(pid=False, ipc=False), True, 0),
    ],
)
def test_flags_for(request_: Request, root: bool, flags: int) -> None:
    assert flags_for(request_, root=root) == flags


@pytest.mark.parametrize(
    ("flags", "names"),
    [
        (CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWIPC, ["userns", "pidns", "ipcns"]),
        (CLONE_NEWPID, ["pidns"]),
        (CLONE_NEWIPC, ["ipcns"]),
        (0, []),
    ],
)
def test_layer_names(flags: int, names: list[str]) -> None:
    assert layer_names(flags) == names


def test_id_map_maps_exactly_one_id() -> None:
    assert id_map(999, 999) == "999 999 1\n"


@pytest.mark.parametrize(
    ("exitcode", "note", "plan"),
    [
        (0, None, ("exit", 0)),
        (1, None, ("exit", 1)),
        (70, None, ("exit", 70)),
        (-9, None, ("signal", 9)),  # init itself was killed (the group's SIGKILL)
        (-15, None, ("signal", 15)),
        (0, 9, ("signal", 9)),  # the plugin died of SIGKILL: init said so and exited 0
        (0, 15, ("signal", 15)),
        (0, 6, ("signal", 6)),
        (3, 9, ("exit", 3)),  # a note only counts with a clean exit of init
        (0, 0, ("exit", 0)),  # not a signal
        (0, 200, ("exit", 0)),  # not a signal either
    ],
)
def test_relay_plan(exitcode: int, note: int | None, plan: tuple[str, int]) -> None:
    assert relay_plan(exitcode, note) == plan


@pytest.mark.parametrize(
    ("root", "sysctls", "refused"),
    [
        (True, {"max_user_namespaces": "0\n"}, None),  # root needs no user namespace
        (False, {"max_user_namespaces": "96365\n"}, None),
        (False, {}, None),  # nothing says no
        (False, {"max_user_namespaces": "0\n"}, "user.max_user_namespaces = 0"),
        (False, {"unprivileged_userns_clone": "0\n"}, "kernel.unprivileged_userns_clone = 0"),
        (False, {"apparmor_restrict_unprivileged_userns": "1\n"}, "AppArmor"),
        (False, {"apparmor_restrict_unprivileged_userns": "0\n"}, None),
    ],
)
def test_userns_refusal(root: bool, sysctls: dict[str, str], refused: str | None) -> None:
    reason = userns_refusal(root, sysctls)
    if refused is None:
        assert reason is None
    else:
        assert reason is not None
        assert refused in reason


class _Control:
    def close(self) -> None:
        raise AssertionError("only the waiter and init close the channel")


def test_a_namespace_the_host_refuses_is_reported_missing_not_silently_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    refused = Outcome(missing=["pidns: Operation not permitted", "ipcns: Operation not permitted"])
    monkeypatch.setattr(namespaces, "enter", lambda request: refused)
    isolation = {"pid_namespace": True, "ipc_namespace": True, "plugin_uids": False}
    layers = confinement._isolate(_Control(), -1, isolation, os.getppid())  # type: ignore[arg-type]
    assert layers == ["missing:pidns", "missing:ipcns"]
