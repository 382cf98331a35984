"""Config and manifest problems: all at once, in our words, with the YAML line (issue 17 item 5).

The config reported only its first problem and in pydantic's words ("Input should be greater
than or equal to 1"); both files now go through ``rosey.protocol.problems``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rosey.config import load_config
from rosey.errors import ConfigError, ConfigProblems
from rosey.protocol.manifest import manifest_problems
from rosey.protocol.problems import YamlFileError, line_of, yaml_lines

BAD_CONFIG = """\
max_crash_count: -1
limits_max:
  memory_mb: x
  stop_timeout_s: 0
http: {listen: 5}
plugins:
  Bad: {}
  dice:
    enabled: maybe
    limits: 3
admins: x
colour: red
"""


def test_every_config_problem_at_once_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "plugins.yaml"
    path.write_text(BAD_CONFIG)
    with pytest.raises(ConfigProblems) as info:
        load_config(path, environ={})
    lines = str(info.value).splitlines()
    assert lines[:-1] == [
        f"{path}:1: max_crash_count: -1 is not allowed; expected a whole number at least 0",
        f"{path}:3: limits_max.memory_mb: 'x' is not allowed; expected a whole number from 16 "
        "to 1048576",
        f"{path}:4: limits_max.stop_timeout_s: 0 is not allowed; expected a number above 0 and "
        "at most 86400",
        f"{path}:5: http.listen: 5 is not allowed; expected a text (put it in quotes)",
        f"{path}:7: plugins.Bad: 'Bad' is not allowed; expected a lowercase name: a letter, then "
        "up to 31 letters, digits or '_'",
        f"{path}:9: plugins.dice.enabled: 'maybe' is not allowed; expected true or false",
        f"{path}:10: plugins.dice.limits: 3 is not allowed; expected a mapping of keys to values",
        f"{path}:11: admins: 'x' is not allowed; expected a list, e.g. [a, b]",
    ]
    assert lines[-1].startswith(f"{path}:12: colour: unknown key; allowed keys here: plugins_dir, ")
    assert "Input should" not in str(info.value)
    # The first problem's fields, as a single ConfigError had them.
    assert (info.value.field, info.value.line) == ("max_crash_count", 1)
    assert len(info.value.problems) == 9


def test_operator_bound_problems_are_all_reported_with_lines(tmp_path: Path) -> None:
    path = tmp_path / "plugins.yaml"
    path.write_text(
        "plugins:\n  dice:\n    limits: {memory_mb: 5000}\n  quote:\n    stop_timeout_s: 99\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    text = str(info.value)
    assert f"{path}:3: plugins.dice.limits.memory_mb: 5000 is above limits_max" in text
    assert f"{path}:5: plugins.quote.stop_timeout_s: 99 is above limits_max" in text


def test_a_value_from_a_flag_has_no_line_of_the_file(tmp_path: Path) -> None:
    path = tmp_path / "plugins.yaml"
    path.write_text("nats: {url: 'nats://127.0.0.1:4222'}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={}, overrides={"nats_url": "http://x"})
    assert str(info.value).startswith(f"{path}: nats.url: ")


def test_manifest_problems_carry_lines() -> None:
    data, lines = yaml_lines("name: Dice\nversion: 1.0.0\nentrypoint: x\nlimits:\n  cpu: 1\n")
    problems = manifest_problems(data, "p.yaml", lines)
    assert [str(p).split(": ", 2)[:2] for p in problems] == [
        ["p.yaml:1", "name"],
        ["p.yaml:3", "entrypoint"],
        ["p.yaml:5", "limits.cpu"],
    ]


@pytest.mark.parametrize(
    ("text", "loc", "line"),
    [
        ("a: 1\nb:\n  c: 2\n", ("b", "c"), 3),
        ("a: 1\nb:\n  c: 2\n", ("b", "missing"), 2),
        ("l:\n  - x\n  - y\n", ("l", 1), 3),
        ("m: {k: [1, 2]}\n", ("m", "k", 1), 1),
        ("base: &b {x: 1}\nother: *b\n", ("other", "x"), 1),
        ("a: 1\n", ("zzz",), None),
    ],
)
def test_line_of(text: str, loc: tuple[str | int, ...], line: int | None) -> None:
    assert line_of(yaml_lines(text)[1], loc) == line


def test_bad_yaml_says_where() -> None:
    with pytest.raises(YamlFileError, match="at line 3, column 1"):
        yaml_lines("a: 1\nb: [\n")
