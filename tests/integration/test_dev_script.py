"""``./dev``: what it installs for which command, what it says, and where paths point
(issue 17, items 1 and 2), through real subprocesses of the real script.

Each test copies ``dev`` into a throwaway checkout. Its ``.venv`` is either a fake (a
``python`` that records the pip calls and makes a ``rosey`` that reports its arguments and
folder), so the install logic is checked without installing anything, or the project's real
virtualenv linked in with the stamps already written, for a real ``rosey`` command.

Regressions: ``./dev run`` installed the test and benchmark tools too and said nothing while it
worked; ``./dev`` changed into the checkout, so ``./dev rosey plugin validate my-plugins`` from
another folder validated the checkout's ``my-plugins`` (absent: "0 plugin(s) valid", exit 0).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).parents[2]
REAL_VENV = REPO / ".venv"

# A python3 for PYTHON=: creates a fake venv on `-m venv DIR`, runs anything else for real.
FAKE_PYTHON3 = f"""#!/bin/sh
if [ "$1" = -m ] && [ "$2" = venv ]; then
    mkdir -p "$3/bin" && cp "$(dirname "$0")/venv-python" "$3/bin/python" && exit 0
fi
exec {sys.executable} "$@"
"""

# The venv's python: records every call; `pip install` makes bin/rosey (reports args, folder).
FAKE_VENV_PYTHON = """#!/bin/sh
bin=$(dirname "$0")
echo "$*" >> "$bin/../calls.log"
case "$*" in
    *"pip install"*)
        printf '#!/bin/sh\\necho "rosey $* (in $PWD)"\\n' > "$bin/rosey"
        chmod +x "$bin/rosey" ;;
esac
"""


def _executable(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A copy of what ``./dev`` reads: the script, pyproject.toml, constraints.txt."""
    root = tmp_path / "rosey"
    root.mkdir()
    for name in ("dev", "pyproject.toml", "constraints.txt"):
        shutil.copy2(REPO / name, root / name)
    return root


@pytest.fixture
def fake_python(tmp_path: Path) -> Path:
    tools = tmp_path / "tools"
    tools.mkdir()
    _executable(tools / "venv-python", FAKE_VENV_PYTHON)
    _executable(tools / "python3", FAKE_PYTHON3)
    return tools / "python3"


def dev(
    checkout: Path, *args: str, cwd: Path, python: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    if python is not None:
        env["PYTHON"] = str(python)
    return subprocess.run(
        [str(checkout / "dev"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def pip_calls(checkout: Path) -> list[str]:
    log = checkout / ".venv" / "calls.log"
    lines = log.read_text().splitlines() if log.exists() else []
    return [line for line in lines if "pip install" in line and "--upgrade pip" not in line]


def test_run_installs_the_runtime_only_and_says_so(
    checkout: Path, fake_python: Path, tmp_path: Path
) -> None:
    first = dev(checkout, "run", "--help", cwd=checkout, python=fake_python)
    assert first.returncode == 0, first.stderr
    assert first.stderr.splitlines() == [
        "dev: creating .venv",
        "dev: installing runtime dependencies (pinned)",
    ]
    [install] = pip_calls(checkout)
    assert install.endswith(f"-c {checkout}/constraints.txt -e {checkout}")  # no extras
    assert first.stdout == f"rosey run --help (in {checkout})\n"

    again = dev(checkout, "run", "--help", cwd=checkout, python=fake_python)
    assert (again.returncode, again.stderr) == (0, "")  # everything in place: quiet
    assert len(pip_calls(checkout)) == 1


def test_setup_after_run_installs_only_the_test_tools(checkout: Path, fake_python: Path) -> None:
    dev(checkout, "run", "--help", cwd=checkout, python=fake_python)
    setup = dev(checkout, "setup", cwd=checkout, python=fake_python)
    assert setup.returncode == 0, setup.stderr
    assert setup.stderr.splitlines() == ["dev: installing test tools (pinned)"]
    assert pip_calls(checkout)[-1].endswith(f"-e {checkout}[dev,bench]")
    assert dev(checkout, "setup", cwd=checkout, python=fake_python).stderr == ""
    # A change to what the installs depend on installs again, runtime first.
    with (checkout / "constraints.txt").open("a") as f:
        f.write("# changed\n")
    changed = dev(checkout, "setup", cwd=checkout, python=fake_python)
    assert changed.stderr.splitlines() == [
        "dev: installing runtime dependencies (pinned)",
        "dev: installing test tools (pinned)",
    ]


def test_the_command_runs_where_it_was_typed(
    checkout: Path, fake_python: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = dev(
        checkout, "rosey", "plugin", "validate", "my-plugins", cwd=elsewhere, python=fake_python
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"rosey plugin validate my-plugins (in {elsewhere})\n"
    assert (checkout / ".venv" / "bin" / "rosey").exists()  # set up in the checkout
    assert not (elsewhere / ".venv").exists()


def _link_real_venv(checkout: Path) -> None:
    """The project's virtualenv, as ``./dev`` would have left it (stamps written)."""
    venv = checkout / ".venv"
    (venv / "bin").mkdir(parents=True)
    for name in ("python", "rosey"):
        (venv / "bin" / name).symlink_to(REAL_VENV / "bin" / name)
    inputs = b"".join((checkout / n).read_bytes() for n in ("pyproject.toml", "constraints.txt"))
    digest = hashlib.sha256(inputs).hexdigest()
    for stamp in ("runtime", "test"):
        (venv / f".rosey-{stamp}").write_text(digest + "\n")


def test_validate_from_another_folder_checks_that_folders_plugins(
    checkout: Path, tmp_path: Path
) -> None:
    _link_real_venv(checkout)
    (checkout / "my-plugins").mkdir()  # what the old ./dev validated instead: empty, "valid"
    elsewhere = tmp_path / "elsewhere"
    broken = elsewhere / "my-plugins" / "broken"
    broken.mkdir(parents=True)
    (broken / "plugin.yaml").write_text("name: Broken\nversion: 1.0.0\nentrypoint: b:B\n")
    result = dev(checkout, "rosey", "plugin", "validate", "my-plugins", cwd=elsewhere)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.startswith(
        "my-plugins/broken/plugin.yaml:1: name: 'Broken' is not allowed"
    )
    assert "dev:" not in result.stderr  # set up already: nothing to say
