"""``rosey plugin new NAME``: the folder it makes validates and passes its own test, as made."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from botproc import run_process, run_rosey


async def test_new_plugin_validates_and_passes_its_test(tmp_path: Path) -> None:
    code, out, err = await run_rosey("plugin", "new", "hello", "--dir", str(tmp_path / "mine"))
    assert code == 0, out + err
    folder = tmp_path / "mine" / "hello"
    assert sorted(p.name for p in folder.iterdir()) == [
        "hello.py",
        "plugin.yaml",
        "pytest.ini",
        "test_hello.py",
    ]
    code, out, err = await run_rosey("plugin", "validate", str(folder))
    assert code == 0, out + err
    assert "1 plugin(s) valid: hello" in out

    # Its own test, run by pytest on the folder from elsewhere (no Rosey config around it).
    code, text, _ = await run_process(
        *(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error"),
        str(folder),
        cwd=tmp_path,
        timeout=120,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert code == 0, text[-3000:]
    assert "1 passed" in text


async def test_new_refuses_a_bad_name_and_an_existing_folder(tmp_path: Path) -> None:
    code, _, err = await run_rosey("plugin", "new", "Bad-Name", "--dir", str(tmp_path))
    assert code == 2
    assert "'Bad-Name' is not a plugin name" in err
    (tmp_path / "taken").mkdir()
    code, _, err = await run_rosey("plugin", "new", "taken", "--dir", str(tmp_path))
    assert code == 1
    assert "already exists; nothing was written" in err
    assert list((tmp_path / "taken").iterdir()) == []
