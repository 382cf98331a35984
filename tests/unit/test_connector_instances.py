"""Connector instances from the config, the relay's stamping, and their broker links (pure)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rosey.config import BotConfig
from rosey.connectors.instances import BUILTIN_TYPES, Route, connector_instances
from rosey.errors import ConfigError
from rosey.protocol import subjects
from rosey.security.connector_relay import pick_instance, stamp
from rosey.security.identities import IdentityBook, plugin_account

ROUTE = Route("main", "cytube", "chan")
USER = {"username": "alice", "rank": 1}


def config(**connectors: dict[str, Any]) -> BotConfig:
    return BotConfig.model_validate({"plugins_dir": [], "connectors": connectors})


def cytube(**extra: Any) -> dict[str, Any]:
    return {
        "type": "cytube",
        "server": "http://127.0.0.1:1",
        "channel": "Chan",
        "username": "b",
    } | (extra)


@pytest.mark.parametrize(
    ("kind", "body", "expected"),
    [
        ("message", {"user": USER, "text": "hi"}, "cytube/chan"),
        ("message", {"user": USER, "platform": "cytube", "channel": "chan"}, "cytube/chan"),
        ("message", {"user": USER, "platform": "console"}, "claimed platform 'console'"),
        ("message", {"user": USER, "channel": "otherchan"}, "claimed channel 'otherchan'"),
        ("user.join", {"user": USER}, "cytube/chan"),
        ("media.change", {"media": {}}, "cytube/chan"),
        ("message", {"text": "no user"}, "needs user.username"),
        ("message", ["not", "an", "object"], "JSON object"),
        ("manager.stop", {"user": USER}, "unknown connector event"),
    ],
)
def test_stamp(kind: str, body: object, expected: str) -> None:
    result = stamp(ROUTE, kind, body)
    if isinstance(result, dict):
        assert f"{result['platform']}/{result['channel']}" == expected
    else:
        assert expected in result


def test_pick_instance_by_channel_or_the_only_one() -> None:
    routes = {
        "a": Route("a", "cytube", "one"),
        "b": Route("b", "cytube", "two"),
        "c": Route("c", "irc", "x"),
    }
    assert pick_instance(routes, "cytube", {"channel": "two"}) == "b"
    assert pick_instance(routes, "cytube", {"channel": "ONE"}) == "a"
    assert pick_instance(routes, "cytube", {"channel": "three"}) is None  # ambiguous: nobody
    assert pick_instance(routes, "irc", {"channel": "y"}) == "c"
    assert pick_instance(routes, "matrix", {"channel": "x"}) is None


def test_builtin_cytube_instance(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PW_FOR_TEST", "s3cret")
    found = connector_instances(config(main=cytube(password="env:PW_FOR_TEST")))
    assert not found.problems
    plugin = found.plugins["main"]
    assert plugin.folder == BUILTIN_TYPES["cytube"]
    assert plugin.manifest.name == "main"
    assert plugin.manifest.kind == "connector"
    assert plugin.manifest.config["password"] == "s3cret"  # resolved in the bot
    assert "network" in plugin.manifest.permissions
    assert found.routes["main"] == Route("main", "cytube", "chan")  # lowercased like CyTube


@pytest.mark.parametrize(
    ("entry", "taken", "words"),
    [
        ({"type": "nosuch", "channel": "c"}, {}, "no such connector"),
        (cytube(password="env:UNSET_FOR_TEST_12"), {}, "UNSET_FOR_TEST_12 is not set"),
        (cytube(), {"main": object()}, "also a plugin's name"),
        ({"type": "cytube", "server": "http://x"}, {}, "required"),
    ],
)
def test_instance_problems(entry: dict[str, Any], taken: dict[str, object], words: str) -> None:
    found = connector_instances(config(main=entry), taken)
    assert "main" not in found.plugins
    assert any(words in str(p) for p in found.problems), found.problems


def test_a_plugin_folder_is_not_a_connector(tmp_path: Path) -> None:
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "plugin.yaml").write_text("name: plain\nversion: 1.0.0\nentrypoint: p:P\n")
    (folder / "p.py").write_text("class P: ...\n")
    found = connector_instances(config(main={"type": str(folder), "channel": "c"}))
    assert any("not a connector" in str(p) for p in found.problems)


@pytest.mark.parametrize("key", ["password", "channel_password", "api_token"])
def test_inline_secret_refused(key: str) -> None:
    with pytest.raises(ValueError, match="never inline"):
        config(main=cytube(**{key: "hunter2"}))


def test_inline_secret_error_does_not_show_it(tmp_path: Path) -> None:
    from rosey.config import load_config

    path = tmp_path / "plugins.yaml"
    path.write_text("connectors:\n  main:\n    type: cytube\n    password: hunter2\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "never inline" in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_connector_account_gets_only_its_own_sends() -> None:
    book = IdentityBook()
    book.set_connectors(["one", "two"])
    book.set_plugins({"one": ["network"], "two": ["network"], "dice": []})
    accounts = book.accounts()
    core_exports = accounts["ROSEY"]["exports"]
    assert {"stream": subjects.connector_send("one"), "accounts": [plugin_account("one")]} in (
        core_exports  # type: ignore[operator]
    )
    one = accounts[plugin_account("one")]
    assert one["imports"] == [
        {
            "stream": {"account": "ROSEY", "subject": subjects.connector_send("one")},
            "to": subjects.CONNECTOR_SEND_LOCAL,
        }
    ]
    assert subjects.CONNECTOR_SEND_LOCAL in book.permissions("one").subscribe_allow
    # A connector publishes only its own subjects; rosey.events.> stays denied.
    assert subjects.EVENTS_ALL in book.permissions("one").publish_deny
    assert subjects.CONNECTOR_SEND_LOCAL not in book.permissions("dice").subscribe_allow
    assert "imports" not in accounts[plugin_account("dice")]
