"""The checker process (``rosey.checker``): the bot's config and manifests are read and checked
in a short-lived child, never in the bot (issue 13: the bot's memory; a hostile plugin.yaml).

Real checker processes answer here; they must say exactly what an in-process check says, and
a manifest that exhausts one must cost only its own plugin.
"""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import pytest

from botproc import EXAMPLE_PLUGINS, FIXTURE_PLUGINS, run_bot
from helpers import eventually
from rosey import checker
from rosey.config import load_config
from rosey.errors import ConfigError
from rosey.plugins.discovery import manifest_files
from rosey.plugins.reading import ManifestRead, read_in_process

BOMB = FIXTURE_PLUGINS / "yaml_bomb"


def same(mine: list[ManifestRead], theirs: list[ManifestRead]) -> None:
    assert [r.path for r in mine] == [r.path for r in theirs]
    for a, b in zip(mine, theirs, strict=True):
        assert (a.declared, a.manifest) == (b.declared, b.manifest)
        if a.manifest is not None and b.manifest is not None:
            assert a.manifest.model_fields_set == b.manifest.model_fields_set
            assert a.manifest.health.model_fields_set == b.manifest.health.model_fields_set
        assert [(str(p), p.line) for p in a.problems] == [(str(p), p.line) for p in b.problems]


def test_the_checker_reads_manifests_as_an_in_process_check_does(tmp_path: Path) -> None:
    broken: dict[str, str | bytes] = {
        "not_yaml": "name: [unclosed\n",
        "not_a_mapping": "- a list\n",
        "bad_fields": "name: Bad\nversion: one\nentrypoint: x\nlimits: {memory_mb: 1}\ncolour: 3\n",
        "dated": "name: dated\nversion: 1.0.0\nentrypoint: m:C\nconfig: {when: 2026-11-28}\n",
        "not_utf8": b"name: \xff\xfe\n",
    }
    for name, text in broken.items():
        folder = tmp_path / name
        folder.mkdir()
        data = text if isinstance(text, bytes) else text.encode()
        (folder / "plugin.yaml").write_bytes(data)
    files = manifest_files([EXAMPLE_PLUGINS, tmp_path])
    files += [f for f in manifest_files([FIXTURE_PLUGINS]) if f.parent != BOMB]
    by_checker = checker.ManifestReads()(files)
    here = read_in_process(files)
    dated = files.index(tmp_path / "dated" / "plugin.yaml")
    # A YAML date cannot be carried to the bot (nor to the plugin): the checker refuses it.
    assert here[dated].manifest is not None
    assert by_checker[dated].manifest is None
    assert "cannot carry a date" in str(by_checker[dated].problems[0])
    del by_checker[dated], here[dated]
    same(by_checker, here)
    assert sum(r.manifest is not None for r in here) > 30
    assert sum(r.manifest is None for r in here) == 4


@pytest.mark.parametrize(
    "text",
    [
        "plugins_dir: [plugins]\nplugins:\n  dice: {limits: {memory_mb: 64}}\nhttp: null\n",
        "max_crash_count: -1\nplugins:\n  dice: {limits: {memory_mb: 999999999}}\ncolour: red\n",
        "limits_max: {memory_mb: 100}\nplugins:\n  dice: {limits: {memory_mb: 200}}\n",
        "nats: {url: [unclosed\n",
        "- not\n- a mapping\n",
    ],
    ids=["good", "bad-fields", "above-limits-max", "not-yaml", "not-a-mapping"],
)
def test_the_checker_loads_the_config_as_an_in_process_check_does(
    tmp_path: Path, text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "plugins.yaml"
    path.write_text(text)
    monkeypatch.setenv("ROSEY_STATE_DIR", str(tmp_path / "state"))  # both read the environment
    overrides = {"nats_url": "nats://127.0.0.1:4999", "plugins_dir": None}
    try:
        expected: object = load_config(path, overrides=overrides)
    except ConfigError as exc:
        expected = exc
    try:
        got: object = checker.load_config(path, overrides=overrides)
    except ConfigError as exc:
        got = exc
    if isinstance(expected, ConfigError):
        assert type(got) is type(expected)
        assert str(got) == str(expected)
    else:
        assert got == expected
        assert got.model_fields_set == expected.model_fields_set  # type: ignore[attr-defined]
        assert str(got.state_dir) == str(tmp_path / "state")  # type: ignore[attr-defined]


def test_a_manifest_that_exhausts_the_checker_costs_only_its_plugin() -> None:
    dice = EXAMPLE_PLUGINS / "dice" / "plugin.yaml"
    bomb, good = checker.ManifestReads()([BOMB / "plugin.yaml", dice])
    assert good.manifest is not None
    assert good.manifest.name == "dice"
    assert bomb.manifest is None
    assert [str(p) for p in bomb.problems] == [
        f"{BOMB / 'plugin.yaml'}: could not be checked: it ran out of its "
        f"{checker.MEMORY_MB} MiB of memory"
    ]


def test_an_unchanged_manifest_is_not_checked_again(tmp_path: Path) -> None:
    """A restart re-reads its manifest and a reload usually changes only code: a file whose
    bytes are those of its last check is answered from that check, with no checker run."""
    path = tmp_path / "echo" / "plugin.yaml"
    path.parent.mkdir()
    path.write_text("name: echo\nversion: 1.0.0\nentrypoint: echo:Echo\n")
    reads = checker.ManifestReads()
    [first] = reads([path])
    assert (reads.runs, first.manifest is not None) == (1, True)
    assert reads([path, path]) == [first, first]
    assert reads.runs == 1
    path.write_text("name: echo\nversion: 2.0.0\nentrypoint: echo:Echo\n")
    [second] = reads([path])
    assert reads.runs == 2
    assert second.manifest is not None
    assert second.manifest.version == "2.0.0"
    bomb = BOMB / "plugin.yaml"
    for runs in (3, 4):  # a file the checker could not check is tried again
        [exhausted] = reads([bomb])
        assert (reads.runs, exhausted.manifest) == (runs, None)


def test_the_reader_forgets_when_it_remembers_too_many(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checker, "_REMEMBERED", 1)
    paths = []
    for name in ("one", "two", "three"):
        path = tmp_path / name / "plugin.yaml"
        path.parent.mkdir()
        path.write_text(f"name: {name}\nversion: 1.0.0\nentrypoint: m:C\n")
        paths.append(path)
    reads = checker.ManifestReads()
    reads(paths[:2])
    both = reads(paths)  # two remembered, one new: answered before the memory is cleared
    assert [r.manifest.name for r in both if r.manifest is not None] == ["one", "two", "three"]
    assert reads.runs == 2
    reads(paths)
    assert reads.runs == 3  # forgotten: the first two are checked again


def test_the_bot_reads_no_more_of_a_huge_manifest_than_its_digest_needs(tmp_path: Path) -> None:
    """A 1 GiB ``plugin.yaml`` (sparse: no disk) is the checker's to read and fail on; the
    reader in the bot hashes at most 1 MiB of a file, and remembers nothing for it."""
    path = tmp_path / "huge" / "plugin.yaml"
    path.parent.mkdir()
    with path.open("wb") as file:
        file.truncate(1 << 30)
    reads = checker.ManifestReads()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB
    for runs in (1, 2):
        [huge] = reads([path])
        assert (reads.runs, huge.manifest) == (runs, None)
        assert "could not be checked" in str(huge.problems[0])
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak < 256 * 1024


def test_a_config_that_exhausts_the_checker_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "plugins.yaml"
    bomb = (BOMB / "plugin.yaml").read_text().split("config:\n", 1)[1]
    path.write_text("plugins:\n  dice:\n    config:\n" + bomb.replace("  ", "      "))
    with pytest.raises(ConfigError, match="could not be checked: it ran out of its 256 MiB"):
        checker.load_config(path)


def peak_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


async def test_the_bot_never_reads_a_hostile_manifest_itself(
    tmp_path: Path, bot_privilege: str
) -> None:
    """The billion-laughs manifest is the checker's problem: the bot comes up with the other
    plugins, says why that folder is skipped, and never holds the expansion (with the checker
    switched off, the bot itself expands it carrying the plugin's config)."""
    async with run_bot(
        tmp_path,
        plugins_dirs=[EXAMPLE_PLUGINS / "dice", BOMB],
        unprivileged=(bot_privilege == "unprivileged"),
    ) as bot:
        assert await bot.chat("!roll 1d1", user="ann") == "ann rolled 1d1: 🎲 1"
        skipped = f"plugin skipped: {BOMB / 'plugin.yaml'}: could not be checked: it ran out"

        async def said() -> bool:
            return any(skipped in line for line in bot.log)

        await eventually(said, 10, "the reason the folder is skipped, in the bot's log")
        listed = await bot.manage("list", {})
        assert [p["name"] for p in listed["result"]["plugins"]] == ["dice"]
        assert bot.proc.returncode is None
        assert peak_kib(bot.pid) < 200 * 1024


def test_an_in_process_check_never_walks_a_plugins_config() -> None:
    """A billion laughs in ``config`` is checked (and refused only where it is carried, by the
    checker's ``encode``) without expanding it: in a child limited to 256 MiB, so that a
    regression fails here instead of exhausting the machine."""
    script = (
        "import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (2**28, 2**28));"
        "from pathlib import Path; from rosey.plugins.reading import read_manifest;"
        f"read = read_manifest(Path({str(BOMB / 'plugin.yaml')!r}));"
        "print(read.declared, read.manifest is not None, len(read.problems))"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.stdout.split() == ["yaml_bomb", "True", "0"], done.stderr
