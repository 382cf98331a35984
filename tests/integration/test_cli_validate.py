"""``rosey plugin validate``: a real CLI process, exit 0 when every folder is valid, 1 otherwise.

What validation finds is unit-tested on ``discover`` (``tests/unit/test_manifest_discovery.py``);
this checks the command around it: its exit codes and that each problem names the file.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def make_plugin(root: Path, folder: str, manifest: str, module: str, code: str) -> Path:
    path = root / folder
    path.mkdir(parents=True)
    (path / "plugin.yaml").write_text(manifest)
    (path / module).write_text(code)
    return path


def validate(*folders: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rosey.cli", "plugin", "validate", *map(str, folders)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_validate_command_exit_codes(tmp_path: Path) -> None:
    good = make_plugin(
        tmp_path,
        "good",
        "name: good\nversion: 1.0.0\nentrypoint: good:Good\n",
        "good.py",
        "class Good: ...\n",
    )
    bad = make_plugin(
        tmp_path,
        "bad",
        "name: bad\nversion: one\nentrypoint: m:P\n",
        "m.py",
        "class P:\n    pass\n",
    )
    ok = validate(good)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "1 plugin(s) valid: good" in ok.stdout
    failed = validate(good, bad)
    assert failed.returncode == 1
    assert f"{bad / 'plugin.yaml'}:2: version: 'one' is not allowed" in failed.stdout


def test_validate_checks_the_published_json_schema(tmp_path: Path) -> None:
    """Issue 17 item 15: the schema is used by validate, not only published. pydantic takes
    ``"256"`` for a whole number and ``true`` for seconds; the schema (and so an editor using
    it) does not, so validate refuses them, with the line. A problem both find is said once."""
    lenient = make_plugin(
        tmp_path,
        "lenient",
        "name: lenient\nversion: 1.0.0\nentrypoint: lenient:Lenient\n"
        "limits:\n  memory_mb: '256'\nstop_timeout_s: true\n",
        "lenient.py",
        "class Lenient: ...\n",
    )
    bad = make_plugin(
        tmp_path,
        "bad",
        "name: bad\nversion: one\nentrypoint: m:P\n",
        "m.py",
        "class P:\n    pass\n",
    )
    out = validate(lenient, bad)
    assert out.returncode == 1, out.stdout + out.stderr
    manifest = lenient / "plugin.yaml"
    said = f"{bad / 'plugin.yaml'}:2: version: 'one' is not allowed; expected a semantic version"
    assert [line.startswith(said) for line in out.stdout.splitlines()].count(True) == 1
    assert (
        f"{manifest}:5: limits.memory_mb: '256' is not allowed; expected a whole number from 16 "
        "to 1048576, without quotes"
    ) in out.stdout
    assert (
        f"{manifest}:6: stop_timeout_s: True is not allowed; expected a number above 0 and at "
        "most 86400"
    ) in out.stdout
    assert "plugin(s) valid" not in out.stdout
