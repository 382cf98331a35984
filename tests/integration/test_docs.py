"""The docs stay true: the author guide's example plugins validate and their tests pass."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
_FILE_BLOCK = re.compile(r"<!-- file: (\S+) -->\n```[a-z]*\n(.*?)```\n", re.S)


def extract(doc: Path, out: Path) -> list[Path]:
    """Write every ``<!-- file: PATH -->`` code block of ``doc`` under ``out``."""
    written = []
    for match in _FILE_BLOCK.finditer(doc.read_text()):
        path = out / match.group(1)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(match.group(2))
        written.append(path)
    return written


def test_authoring_guide_examples_validate_and_pass_their_tests(tmp_path: Path) -> None:
    files = extract(REPO / "docs" / "plugins" / "AUTHORING.md", tmp_path)
    assert len(files) >= 4, "the guide lost its example files"
    manifests = [p for p in files if p.name == "plugin.yaml"]
    assert manifests
    validate = subprocess.run(
        [
            sys.executable,
            "-m",
            "rosey.cli",
            "plugin",
            "validate",
            *(str(p.parent) for p in manifests),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert validate.returncode == 0, validate.stdout + validate.stderr
    tests = [str(p) for p in files if p.name.startswith("test_")]
    assert tests
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error", *tests],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert " passed" in run.stdout
