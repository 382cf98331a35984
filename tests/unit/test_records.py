"""Records (``rosey.protocol.record``): the checked config and manifests, without pydantic.

The running bot holds records made in the checker process; each must be what its pydantic
model would have been (same fields, defaults, set fields, dump) and cross the process boundary
unchanged.
"""

from __future__ import annotations

import copy
import datetime
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rosey import config, config_schema
from rosey.protocol import manifest, manifest_schema
from rosey.protocol.record import REQUIRED, Record, decode, encode

MODELS = [
    value
    for module in (manifest_schema, config_schema)
    for value in vars(module).values()
    if isinstance(value, type) and "__record__" in vars(value)
]


def fields_set(value: Any) -> Any:
    """Every record's set fields, recursively (equality of records ignores them)."""
    if isinstance(value, Record):
        inner = {k: fields_set(getattr(value, k)) for k in value.model_fields}
        return (sorted(value.model_fields_set), inner)
    if isinstance(value, dict):
        return {k: fields_set(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [fields_set(v) for v in value]
    return None


def dump(value: Any) -> Any:
    return value.model_dump() if hasattr(value, "model_dump") else value


def trip(value: Any) -> Any:
    return decode(json.loads(json.dumps(encode(value))))


def test_every_model_has_a_record() -> None:
    names = {m.__name__ for m in MODELS}
    assert names == {"Limits", "Health", "Manifest"} | {
        *("NatsSettings", "LimitsOverride", "LimitsMax", "HealthOverride", "PluginOverride"),
        *("BackoffSettings", "ErrorRateSettings", "BrokerSettings", "SecuritySettings"),
        *("RuntimeSettings", "RouterSettings", "HttpSettings", "ConnectorEntry", "BotConfig"),
    }


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_each_record_has_its_models_name_fields_and_defaults(model: Any) -> None:
    record = model.__record__
    assert record.__name__ == model.__name__
    assert record.__schema__ == f"{model.__module__}:{model.__name__}"
    assert [f for f in record.model_fields if f != record.__extra__] == list(model.model_fields)
    for name, info in model.model_fields.items():
        if info.is_required():
            assert record.model_fields[name] is REQUIRED
        else:
            assert dump(record.model_fields[name]) == dump(
                info.get_default(call_default_factory=True)
            )
    if not any(info.is_required() for info in model.model_fields.values()):
        assert record().model_dump() == model().model_dump()


RICH_CONFIG = {
    "plugins_dir": ["a", "b"],
    "http": None,
    "reload_probation_s": 0,
    "security": {"plugin_uid_range": [1000, 2000], "broker": {"plugin_connections": 8}},
    "plugins": {
        "dice": {"enabled": False, "limits": {"memory_mb": 64}, "config": {"k": [1, {"x": None}]}},
        "quiet": {"health": {"interval_s": 2}},
    },
    "connectors": {"chat": {"type": "cytube", "channel": "x", "password": "env:PASSWORD"}},
    "admins": ["cytube:rank>=3", "console:console"],
    "backoff": {"initial_s": 0.1},
}


def test_a_config_crosses_from_the_checker_unchanged() -> None:
    checked = config.BotConfig.model_validate(RICH_CONFIG)
    back = trip(checked)
    assert back == checked
    assert fields_set(back) == fields_set(checked)
    assert back.plugins_dir == [Path("a"), Path("b")]
    assert back.security.plugin_uid_range == (1000, 2000)
    assert back.http is None
    assert back.connectors["chat"].settings == {"channel": "x", "password": "env:PASSWORD"}
    assert back.plugins["dice"].limits.model_fields_set == {"memory_mb"}
    model = config_schema.BotConfig.model_validate(RICH_CONFIG).model_dump()
    mine = back.model_dump()
    entry = mine.pop("connectors")["chat"]
    assert {"type": entry["type"], **entry["settings"]} == model.pop("connectors")["chat"]
    assert mine == model


NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=10,
)
MANIFEST_FIELDS = {
    "description": st.text(max_size=10),
    "kind": st.sampled_from(["plugin", "connector"]),
    "commands": st.lists(NAMES, max_size=3, unique=True),
    "dependencies": st.lists(NAMES, max_size=3, unique=True),
    "restart_policy": st.sampled_from(["always", "on-failure", "never"]),
    "critical": st.booleans(),
    "permissions": st.lists(st.sampled_from(["chat.send", "storage", "network"]), unique=True),
    "limits": st.fixed_dictionaries({}, optional={"memory_mb": st.integers(16, 4096)}),
    "health": st.fixed_dictionaries({}, optional={"interval_s": st.floats(0.1, 100)}),
    "stop_timeout_s": st.floats(0.1, 100),
    "config": st.dictionaries(st.text(max_size=4), JSONISH, max_size=3),
    "requires_rosey": st.just(">=0.1,<1"),
}


@settings(max_examples=60, deadline=None)
@given(
    name=NAMES,
    chosen=st.fixed_dictionaries({}, optional=MANIFEST_FIELDS),
)
def test_a_manifest_is_what_its_model_says_and_crosses_unchanged(
    name: str, chosen: dict[str, Any]
) -> None:
    data = {"name": name, "version": "1.2.3", "entrypoint": "mod:Cls", **chosen}
    model = manifest_schema.Manifest.model_validate(data)
    record = manifest.Manifest.model_validate(data)
    assert record.model_dump() == model.model_dump()
    assert record.model_fields_set == model.model_fields_set
    assert record.limits.model_fields_set == model.limits.model_fields_set
    back = trip(record)
    assert back == record
    assert fields_set(back) == fields_set(record)


def test_records_are_values() -> None:
    limits = manifest.Limits(memory_mb=64)
    assert limits.model_fields_set == {"memory_mb"}
    assert limits == manifest.Limits(memory_mb=64, cpu_percent=50)
    assert hash(limits) == hash(manifest.Limits(memory_mb=64))
    assert limits != manifest.Limits()
    with pytest.raises(AttributeError, match="immutable"):
        limits.memory_mb = 1  # type: ignore[misc]
    with pytest.raises(TypeError, match="Limits has no field 'colour'"):
        manifest.Limits(colour=1)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="Manifest needs 'version'"):
        manifest.Manifest(name="a", entrypoint="m:C")  # type: ignore[call-arg]
    one, two = (
        manifest.Manifest(name="a", version="1.0.0", entrypoint="m:C"),
        manifest.Manifest(name="b", version="1.0.0", entrypoint="m:C"),
    )
    one.commands.append("x")  # a list default is each record's own
    assert two.commands == []
    copied = limits.model_copy(update={"data_mb": 5})
    assert copied.data_mb == 5
    assert copied.model_fields_set == {"memory_mb", "data_mb"}
    assert limits.data_mb == 100
    assert config.NatsSettings().model_dump(exclude_none=True) == {}
    assert copy.deepcopy(one) == one
    assert copy.deepcopy(one).model_fields_set == one.model_fields_set


def test_records_given_to_a_model_count_as_the_fields_they_were_given() -> None:
    checked = config.BotConfig.model_validate({"backoff": config.BackoffSettings(initial_s=1)})
    assert checked.backoff.initial_s == 1
    assert checked.backoff.model_fields_set == {"initial_s"}
    entry = config.BotConfig.model_validate(RICH_CONFIG).connectors["chat"]
    again = config.BotConfig.model_validate({"connectors": {"chat": entry}})
    assert again.connectors["chat"] == entry


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (datetime.date(2026, 1, 1), "cannot carry a date"),
        (b"x", "cannot carry a bytes"),
        ({1, 2}, "cannot carry a set"),
    ],
)
def test_what_json_cannot_carry_is_refused(value: Any, words: str) -> None:
    with pytest.raises(TypeError, match=words):
        encode({"config": [value]})


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"@": "record", "class": "Popen", "set": [], "values": {}}, "not a record class"),
        ({"@": "eval", "items": []}, "tag 'eval'"),
        ({"plain": "dict"}, "tag None"),
        ({"@": "record", "class": "Limits", "set": [], "values": {"colour": 1}}, "no field"),
    ],
)
def test_decode_builds_only_records_and_plain_values(data: Any, words: str) -> None:
    with pytest.raises((ValueError, TypeError), match=words):
        decode(data)


def test_keys_of_any_json_scalar_keep_their_type() -> None:
    assert trip({1: "a", "1": "b", None: [1.5, (2, 3)]}) == {1: "a", "1": "b", None: [1.5, (2, 3)]}
