"""A plugin's ``requirements``: normal form, cache key, the manifest's check, reading a failed
build's output (``rosey.plugins.requirements``, ``rosey.protocol.manifest``)."""

from __future__ import annotations

import pytest

from rosey.errors import EnvironmentBuildFailed, EnvironmentNotBuilt, ManifestError
from rosey.plugins.requirements import KEY_LENGTH, blame, environment_key, normal_set, normalize
from rosey.protocol.manifest import parse_manifest

BASE = {"name": "p", "version": "1.0.0", "entrypoint": "p:P"}


@pytest.mark.parametrize(
    ("written", "normal"),
    [
        ("six==1.16.0", "six==1.16.0"),
        ("Six == 1.16.0", "six==1.16.0"),
        ("Foo_Bar.baz>=1", "foo-bar-baz>=1"),
        ("requests>=2,<3", "requests<3,>=2"),
        ("requests <3, >=2", "requests<3,>=2"),
        ("pkg[B,a]==1", "pkg[a,b]==1"),
        ('six; python_version >= "3"', 'six ; python_version >= "3"'),
        (
            "pkg @ https://example.org/pkg-1.0-py3-none-any.whl",
            "pkg @ https://example.org/pkg-1.0-py3-none-any.whl",
        ),
    ],
)
def test_normal_form(written: str, normal: str) -> None:
    assert normalize(written) == normal


def test_a_set_is_sorted_without_repeats() -> None:
    assert normal_set(["six==1.16.0", "idna==3.10", "SIX==1.16.0"]) == ("idna==3.10", "six==1.16.0")


@pytest.mark.parametrize(
    ("one", "other", "same"),
    [
        (["six==1.16.0"], ["SIX == 1.16.0"], True),
        (["six==1.16.0", "idna==3.10"], ["idna==3.10", "six==1.16.0", "six==1.16.0"], True),
        (["six==1.16.0"], ["six==1.15.0"], False),
        (["six==1.16.0"], ["six==1.16.0", "idna==3.10"], False),
        ([], ["six"], False),
    ],
)
def test_environment_key(one: list[str], other: list[str], same: bool) -> None:
    key = environment_key(one, "runtime A")
    assert len(key) == KEY_LENGTH
    assert (key == environment_key(other, "runtime A")) is same
    # The same set for another runtime (interpreter, SDK pins, rosey's place) is another env.
    assert environment_key(one, "runtime B") != key


UV_NOT_FOUND = """\
Using Python 3.11.7 environment at: /s/envs/.build-x/
  × No solution found when resolving dependencies:
error: No solution found when resolving dependencies
  cause: Because rosey-no-such-pkg was not found in the package registry and you require \
rosey-no-such-pkg==1.0, we can conclude that your requirements are unsatisfiable.
"""
UV_CONFLICT = """\
error: No solution found when resolving dependencies:
  ╰─▶ Because you require six==1.16.0 and six==1.15.0, we can conclude that your requirements \
are unsatisfiable.
"""
UV_SDK_CONFLICT = """\
error: No solution found when resolving dependencies:
  ╰─▶ Because you require nats-py<2 and nats-py==2.16.0, we can conclude that your \
requirements are unsatisfiable.
"""
UV_BUILD = """\
Resolved 1 package in 10ms
error: Failed to build `brokenpkg==0.1`
  ├─▶ The build backend returned an error
  ╰─▶ Call to `setuptools.build_meta.build_wheel` failed (exit status: 1)
      hint: This usually indicates a problem with the package or the build environment.
"""
PIP_NOT_FOUND = """\
Looking in indexes: https://example.org/simple
ERROR: Could not find a version that satisfies the requirement Rosey_No_Such_Pkg==1.0 \
(from versions: none)
ERROR: No matching distribution found for Rosey_No_Such_Pkg==1.0
"""
NETWORK = "error: Failed to fetch: `https://example.org/simple/six/`\n  Caused by: timed out\n"


@pytest.mark.parametrize(
    ("output", "asked", "named", "in_reason"),
    [
        (
            UV_NOT_FOUND,
            ["six==1.16.0", "rosey-no-such-pkg==1.0", "nats-py==2.16.0"],
            ("rosey-no-such-pkg==1.0",),
            "rosey-no-such-pkg was not found in the package registry",
        ),
        (
            UV_CONFLICT,
            ["six==1.16.0", "six==1.15.0", "nats-py==2.16.0"],
            ("six==1.16.0", "six==1.15.0"),
            "you require six==1.16.0 and six==1.15.0",
        ),
        (
            UV_SDK_CONFLICT,
            ["nats-py<2", "nats-py==2.16.0"],
            ("nats-py<2", "nats-py==2.16.0"),
            "we can conclude",
        ),
        (UV_BUILD, ["brokenpkg==0.1", "six"], ("brokenpkg==0.1",), "Failed to build"),
        (
            PIP_NOT_FOUND,
            ["rosey-no-such-pkg==1.0", "nats-py==2.16.0"],
            ("rosey-no-such-pkg==1.0",),
            "No matching distribution found",
        ),
        (NETWORK, ["six==1.16.0", "nats-py==2.16.0"], ("six==1.16.0",), "timed out"),
        ("", ["six"], (), "the installer failed silently"),
    ],
)
def test_blame(output: str, asked: list[str], named: tuple[str, ...], in_reason: str) -> None:
    found = blame(output, asked)
    assert found.requirements == named
    assert in_reason in found.reason
    assert "Using Python" not in found.reason
    assert "hint" not in found.reason


def test_blame_does_not_take_a_longer_version_for_a_shorter_one() -> None:
    assert blame(
        "error: Because six==1.16.0 was yanked", ["six==1.1", "six==1.16.0"]
    ).requirements == ("six==1.16.0",)


def test_a_long_reason_is_cut() -> None:
    output = "error: x\n" + "\n".join(f"line {i} " + "y" * 300 for i in range(50))
    assert len(blame(output, []).reason) <= 1500


@pytest.mark.parametrize(
    ("named", "words"),
    [
        (["a==1"], "requirement 'a==1' cannot be installed (uv: why)"),
        (["a==1", "a==2"], "requirements 'a==1', 'a==2' cannot be installed together (uv: why)"),
        ([], "the installer failed (uv: why)"),
    ],
)
def test_build_failure_message(named: list[str], words: str) -> None:
    error = EnvironmentBuildFailed(["a==1", "a==2"], named, "why", "uv")
    assert str(error).startswith(
        "cannot build the Python environment for requirements [a==1, a==2]: "
    )
    assert str(error).endswith(words)
    assert error.requirement == (named[0] if named else None)
    assert error.code == "bad_request"


def test_not_built_names_the_command() -> None:
    error = EnvironmentNotBuilt("p", ["six==1.16.0"], "rosey plugin validate --state-dir /s /p")
    assert str(error) == (
        "plugin 'p': its Python environment for requirements [six==1.16.0] is not built; "
        "build it with: rosey plugin validate --state-dir /s /p"
    )


def test_manifest_takes_requirements() -> None:
    manifest = parse_manifest({**BASE, "requirements": ["six==1.16.0", "requests>=2,<3"]}, "m")
    assert manifest.requirements == ["six==1.16.0", "requests>=2,<3"]
    assert parse_manifest(BASE, "m").requirements == []


@pytest.mark.parametrize(
    ("requirements", "problem"),
    [
        (["six=="], "'six==' is not a valid requirement ("),
        (["-e ./here"], "'-e ./here' is not a valid requirement ("),
        (["six\n--index-url http://evil"], "is not a valid requirement"),
        (["rosey==0.1"], "'rosey==0.1': the rosey package is the bot's own; leave it out"),
        (["six", "six"], "'six' is listed twice"),
        ("six", "expected a list"),
    ],
)
def test_manifest_refuses_bad_requirements(requirements: object, problem: str) -> None:
    with pytest.raises(ManifestError) as caught:
        parse_manifest({**BASE, "requirements": requirements}, "plugin.yaml")
    assert caught.value.file == "plugin.yaml"
    assert caught.value.field.startswith("requirements")
    assert problem in caught.value.problem
    if isinstance(requirements, list) and "twice" not in problem and "rosey" not in problem:
        assert "expected a PEP 508 string such as 'six==1.16.0'" in caught.value.problem
