"""Pure parts of the permission system: violation parsing, policy, identities."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from rosey.protocol import subjects
from rosey.protocol.wire import CommandRequest
from rosey.sandbox.host import CgroupHost
from rosey.security.broker_cgroup import BrokerCgroup, memory_settings
from rosey.security.identities import (
    BrokerQuotas,
    IdentityBook,
    plugin_account,
    plugin_of_account,
    plugin_of_user,
    plugin_user,
)
from rosey.security.relay import relayed_request
from rosey.security.violations import Violation, ViolationPolicy, parse_violation

LINE = (
    "[11932] 2026/11/24 22:31:00.042780 [ERR] 127.0.0.1:59790 - cid:5 - "
    '"v2.16.0:python3:plugin:dice"'
    ' - "plugin_{user}/user:plugin_{user}" - {kind} Violation - Subject "{subject}"'
)


def _line(name: str, identity: str, tail: str = 'Publish Violation - Subject "x"') -> str:
    """A log line as nats-server 2.15 writes it: the name Go-quoted (``%q``), then the identity."""
    quoted = json.dumps(f"v2.16.0:python3:{name}")  # JSON escapes " \ and newlines as %q does
    return f'[1] 2026/11/24 22:31:00.1 [ERR] 127.0.0.1:1 - cid:7 - {quoted} - "{identity}" - {tail}'


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            LINE.format(user="hostile", kind="Publish", subject="rosey.manager.stop"),
            Violation(
                "hostile",
                "publish",
                "rosey.manager.stop",
                "the broker refused to publish 'rosey.manager.stop'",
            ),
        ),
        (
            LINE.format(user="hostile", kind="Subscription", subject=">") + ", SID 1",
            Violation("hostile", "subscribe", ">", "the broker refused to subscribe '>'"),
        ),
        (
            LINE.format(user="hostile", kind="Subscription", subject="a.b") + ', Queue: "q", SID 3',
            Violation("hostile", "subscribe", "a.b", "the broker refused to subscribe 'a.b'"),
        ),
        (
            _line("n", "plugin_hostile/user:plugin_hostile", "maximum subscriptions exceeded"),
            Violation(
                "hostile",
                "quota",
                "",
                "the broker closed a connection: maximum subscriptions exceeded",
            ),
        ),
        # No client name at all.
        (
            '[1] [ERR] 127.0.0.1:1 - cid:9 - "plugin_hostile/user:plugin_hostile" - '
            'Publish Violation - Subject "rosey.manager.stop"',
            Violation(
                "hostile",
                "publish",
                "rosey.manager.stop",
                "the broker refused to publish 'rosey.manager.stop'",
            ),
        ),
        # The core's identities and mismatched account/user are nobody's to count.
        (_line("n", "ROSEY/user:rosey_router"), None),
        (_line("n", "ROSEY/user:plugin_dice"), None),
        (_line("n", "plugin_dice/user:plugin_other"), None),
        (_line("n", "plugin_dice/user:keeper_dice"), None),
        ("[INF] Server is ready", None),
    ],
)
def test_parse_violation(line: str, expected: Violation | None) -> None:
    assert parse_violation(line) == expected


VICTIM = "plugin_victim/user:plugin_victim"


@pytest.mark.parametrize(
    "name",
    [
        "plugin:victim",
        "plugin_victim",
        VICTIM,
        f'x" - "{VICTIM}" - Publish Violation - Subject "rosey.manager.stop',
        f'{VICTIM}" - Publish Violation - Subject ',
        f'x\\" - "{VICTIM}',
        f'x\\\\" - "{VICTIM}" - Publish Violation - Subject "y',
        f'a"\n[ERR] 127.0.0.1:1 - cid:1 - "{VICTIM}" - Publish Violation - Subject "b',
        f'" - cid:3 - "{VICTIM}" - Publish Violation - Subject "z',
    ],
)
def test_client_chosen_name_cannot_frame_another_plugin(name: str) -> None:
    """Regression: a second connection whose name imitated another plugin's log fragment made
    the parser blame that plugin. Only the broker's authenticated account/user counts."""
    line = _line(name, "plugin_hostile/user:plugin_hostile")
    violation = parse_violation(line)
    assert violation is not None
    assert violation.plugin == "hostile"
    assert violation.subject == "x"


def test_policy_window_and_limit() -> None:
    policy = ViolationPolicy(max_violations=2, window_s=10)
    assert [policy.record("p", t) for t in (0, 1, 2)] == [False, False, True]
    assert policy.totals["p"] == 3
    policy.forget("p")
    assert policy.record("p", 3) is False
    assert [policy.record("q", t) for t in (0, 11, 22)] == [False, False, False]
    never = ViolationPolicy(max_violations=0)
    assert not any(never.record("p", t) for t in range(100))


def test_identities_render_an_account_per_plugin() -> None:
    book = IdentityBook(BrokerQuotas(max_connections=3, storage_mb=16))
    book.set_plugins(
        {
            "dice": [],
            "calendar": ["plugins.call:markov", "chat.send", "storage"],
            "markov": [],
        }
    )
    text = book.render()
    assert text.startswith("accounts ")
    accounts = json.loads(text.removeprefix("accounts "))
    assert accounts == book.accounts()
    assert set(accounts) == {"ROSEY", "plugin_dice", "plugin_calendar", "plugin_markov"}
    core = {u["user"] for u in accounts["ROSEY"]["users"]}
    assert core == {"rosey_admin", "rosey_manager", "rosey_router"}
    assert all("permissions" not in u for u in accounts["ROSEY"]["users"])
    calendar = accounts["plugin_calendar"]
    users = {u["user"]: u for u in calendar["users"]}
    assert set(users) == {"plugin_calendar", "keeper_calendar"}
    assert "permissions" not in users["keeper_calendar"]
    perms = users["plugin_calendar"]["permissions"]
    assert "rosey.commands.markov.execute" in perms["publish"]["allow"]
    assert "rosey.manager.>" in perms["publish"]["deny"]
    assert calendar["limits"] == {
        "max_connections": 3,
        "max_subscriptions": 1000,
        "max_payload": 1024 * 1024,
    }
    assert calendar["jetstream"]["max_file"] == 16 * 1024 * 1024
    assert calendar["jetstream"]["max_mem"] == 0
    assert "jetstream" not in accounts["plugin_dice"]
    assert {
        "service": {"account": "ROSEY", "subject": "rosey.relay.calendar.markov"},
        "to": "rosey.commands.markov.execute",
    } in calendar["imports"]
    assert book.may_call("calendar", "markov")
    assert not book.may_call("markov", "calendar")
    assert not book.may_call("ghost", "markov")
    # The JetStream budget is exactly the reservations: the core's and one storage plugin's.
    assert book.jetstream_store_bytes() == (8 + 16) * 1024 * 1024
    every = [u for a in accounts.values() for u in a["users"]]
    assert len({u["password"] for u in every}) == len(every)
    assert book.plugin("dice").password not in repr(book.plugin("dice"))
    again = book.plugin("dice").password
    book.set_plugins({"dice": [], "new": []})
    assert book.plugin("dice").password == again
    assert plugin_of_user(plugin_user("new")) == "new"
    assert plugin_of_user("rosey_admin") is None
    assert plugin_of_account(plugin_account("new")) == "new"
    assert plugin_of_account("ROSEY") is None


def test_relayed_request_is_written_by_the_core() -> None:
    """The caller's claim about who it is (user, platform, channel) never reaches the callee."""
    forged: CommandRequest = {
        "command": "whoami",
        "args": ["a"],
        "text": "!whoami a",
        "user": {"username": "console", "rank": 100},
        "channel": "console",
        "platform": "console",
        "correlation_id": "c1",
    }
    assert relayed_request("caller", forged) == {
        "command": "whoami",
        "args": ["a"],
        "text": "!whoami a",
        "user": {"username": "caller", "rank": 0},
        "channel": "",
        "platform": "plugin",
        "correlation_id": "c1",
    }


@pytest.mark.parametrize(
    ("reply", "answerable"),
    [
        ("_R_.abc.def", True),
        ("_INBOX_ROUTER.abc.1", True),
        ("_INBOX_MANAGER.abc", True),
        ("_INBOX_calendar.abc.1", True),
        ("rosey.manager.stop", False),
        ("rosey.commands.dice.execute", False),
        ("_INBOX.abc", True),
        ("_INBOX_Calendar.abc", False),
        ("_R_", False),
        ("_R_.>", False),
        ("$KV.ROSEY_MANAGER.desired_state", False),
        ("_INBOX_ROUTER", False),
    ],
)
def test_which_reply_subjects_a_plugin_answers(reply: str, answerable: bool) -> None:
    assert subjects.is_answerable_reply(reply) is answerable


def test_relay_subjects_round_trip() -> None:
    assert subjects.parse_relay(subjects.relay("a", "b")) == ("a", "b")
    assert subjects.parse_relay("rosey.relay.a") is None
    assert subjects.parse_relay("rosey.commands.a.b") is None
    assert subjects.parse_relay("rosey.relay.a.b.c") is None


def test_broker_memory_cgroup_settings_for_v1_and_v2() -> None:
    assert [(s.file, s.value) for s in memory_settings("v1", 300)] == [
        ("memory.limit_in_bytes", str(300 * 1024 * 1024)),
        ("memory.memsw.limit_in_bytes", str(300 * 1024 * 1024)),
    ]
    assert ("memory.max", str(300 * 1024 * 1024)) in [
        (s.file, s.value) for s in memory_settings("v2", 300)
    ]


def test_broker_cgroup_places_the_server_or_says_why_not(tmp_path: Path) -> None:
    """On a fake hierarchy (plain folders): v1 gets its folder and files; v2 without the memory
    controller delegated and a host without cgroups get nothing, and no error."""
    own = tmp_path / "memory"
    own.mkdir()
    v1 = BrokerCgroup(CgroupHost(controllers={"memory": ("v1", own)}), "fam", os.getpid(), 300)
    assert v1.place(4242) == "cgroup-v1-memory"
    assert v1.folder is not None
    assert v1.folder.name.startswith("rosey-fam-")
    assert v1.folder.name.endswith("-broker")
    assert (v1.folder / "memory.limit_in_bytes").read_text() == str(300 * 1024 * 1024)
    assert (v1.folder / "cgroup.procs").read_text() == "4242"
    unified = tmp_path / "unified"
    unified.mkdir()
    (unified / "cgroup.subtree_control").write_text("cpu pids\n")
    v2 = BrokerCgroup(CgroupHost(controllers={"memory": ("v2", unified)}), "fam", 1, 300)
    assert v2.place(4242) is None
    assert BrokerCgroup(CgroupHost(), "fam", 1, 300).place(4242) is None
