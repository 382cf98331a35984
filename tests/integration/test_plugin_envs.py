"""Plugins with ``requirements`` run in Python environments of their own (DESIGN 2.10).

Real packages from the package index (``six``, small and pure Python), real builds with uv (and
pip, the fallback), a real bot: two plugins pinning different versions of ``six`` both answer
with theirs; an environment is built by ``rosey plugin validate``, never at start; a requirement
that cannot be installed is named with the resolver's reason and leaves nothing in ``envs/``;
equal sets share one environment; and a hostile plugin with its own environment can read it,
but neither another plugin's environment nor the bot's virtualenv.

The builds share a uv cache per session (one as root, one as the unprivileged test user), so
each package is downloaded once.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml
from test_isolation_reach import add_traverse

import privilege
from botproc import EXAMPLE_PLUGINS, FIXTURE_PLUGINS, BotProcess, cli_env, run_bot, run_process
from rosey.errors import EnvironmentBuildFailed
from rosey.sandbox.environments import MARKER, EnvironmentStore

SIX_NEW = FIXTURE_PLUGINS / "env_six_new"
SIX_OLD = FIXTURE_PLUGINS / "env_six_old"
SNOOP = FIXTURE_PLUGINS / "env_snoop"
DICE = EXAMPLE_PLUGINS / "dice"


@pytest.fixture(scope="session")
def uv_caches(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A uv cache for builds as root and one for builds as the unprivileged user."""
    return {
        "root": tmp_path_factory.mktemp("uv-cache-root"),
        "unprivileged": tmp_path_factory.mktemp("uv-cache-user"),
    }


@pytest.fixture
def root_cache(uv_caches: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> Path:
    """Builds made by this test process use the session's root cache."""
    monkeypatch.setenv("UV_CACHE_DIR", str(uv_caches["root"]))
    return uv_caches["root"]


async def build_envs(
    tmp_path: Path, folders: list[Path], *, privilege_of: str, caches: dict[str, Path]
) -> tuple[int, str]:
    """``rosey plugin validate --state-dir STATE FOLDER...`` as the bot's own user runs it
    (it builds the environments); exit code and output."""
    state = tmp_path / "state"
    args = [sys.executable, "-m", "rosey.cli", "plugin", "validate", "--state-dir", str(state)]
    args += [str(folder) for folder in folders]
    env = cli_env()
    cache = caches[privilege_of]
    env["UV_CACHE_DIR"] = str(cache)
    if privilege_of == "unprivileged":
        user, state = privilege.prepare(tmp_path)
        os.chown(cache, user.pw_uid, user.pw_gid)
        args = privilege.command_as(user, args)
        env["HOME"] = str(state)
    code, out, _ = await run_process(
        *args, cwd=tmp_path, env=env, timeout=300, stderr=asyncio.subprocess.STDOUT
    )
    return code, out


def envs_of(bot_or_tmp: BotProcess | Path) -> Path:
    state = bot_or_tmp.state_dir if isinstance(bot_or_tmp, BotProcess) else bot_or_tmp / "state"
    return (state / "envs").resolve()


def answer_prefix(reply: str) -> Path:
    """``six 1.16.0 in /…/envs/KEY`` → the environment the plugin runs in."""
    return Path(reply.split(" in ", 1)[1])


async def test_two_plugins_pinning_different_versions_both_run(
    tmp_path: Path, bot_privilege: str, uv_caches: dict[str, Path]
) -> None:
    code, out = await build_envs(
        tmp_path, [SIX_NEW, SIX_OLD], privilege_of=bot_privilege, caches=uv_caches
    )
    assert code == 0, out
    assert "2 plugin(s) valid: env_six_new, env_six_old" in out
    async with run_bot(
        tmp_path,
        plugins_dirs=[DICE, SIX_NEW, SIX_OLD],
        unprivileged=bot_privilege == "unprivileged",
    ) as bot:
        new = await bot.chat("!sixnew")
        old = await bot.chat("!sixold")
        assert new.startswith("six 1.16.0 in "), new
        assert old.startswith("six 1.15.0 in "), old
        envs = envs_of(bot)
        assert {answer_prefix(new).parent, answer_prefix(old).parent} == {envs}
        assert answer_prefix(new) != answer_prefix(old)
        # A plugin without requirements keeps the bot's environment.
        assert await bot.chat("!roll 1d1", user="ann") == "ann rolled 1d1: 🎲 1"
        for name in ("env_six_new", "env_six_old", "dice"):
            status = (await bot.manage("status", {"plugin": name}))["result"]
            assert status["state"] == "running", status


async def test_an_environment_is_never_built_at_start(
    tmp_path: Path, uv_caches: dict[str, Path]
) -> None:
    """Not built: the plugin does not start (and is not retried: only an operator can build
    it), its status names the command that builds it, the others run. Built, it starts."""
    async with run_bot(tmp_path, plugins_dirs=[DICE, SIX_NEW]) as bot:
        status = (await bot.manage("status", {"plugin": "env_six_new"}))["result"]
        assert (status["state"], status["crash_count"], status["restart_count"]) == (
            "crashed",
            0,
            0,
        )
        assert status["next_restart_in"] is None
        command = f"rosey plugin validate --state-dir {bot.state_dir.resolve()} {SIX_NEW.resolve()}"
        assert (
            "its Python environment for requirements [six==1.16.0] is not built"
            in (status["last_error"])
        )
        assert command in status["last_error"]
        assert await bot.chat("!roll 1d1", user="ann") == "ann rolled 1d1: 🎲 1"
        assert not envs_of(bot).exists()

        code, out = await build_envs(tmp_path, [SIX_NEW], privilege_of="root", caches=uv_caches)
        assert code == 0, out
        started = await bot.manage("start", {"plugin": "env_six_new"})
        assert started["ok"], started
        assert (await bot.chat("!sixnew")).startswith("six 1.16.0 in ")


@pytest.mark.parametrize(
    ("requirements", "culprit", "reason"),
    [
        (
            ["six==1.16.0", "rosey-no-such-pkg==1.0"],
            "requirement 'rosey-no-such-pkg==1.0' cannot be installed",
            "rosey-no-such-pkg was not found in the package registry",
        ),
        (["six==99.0"], "requirement 'six==99.0' cannot be installed", "no version of six==99.0"),
        (
            ["six==1.16.0", "six==1.15.0"],
            "requirements 'six==1.16.0', 'six==1.15.0' cannot be installed together",
            "you require six==1.16.0 and six==1.15.0",
        ),
    ],
)
async def test_a_requirement_that_cannot_be_installed_is_named(
    tmp_path: Path,
    uv_caches: dict[str, Path],
    requirements: list[str],
    culprit: str,
    reason: str,
) -> None:
    folder = tmp_path / "plugins" / "env_bad"
    shutil.copytree(SIX_NEW, folder)
    manifest = yaml.safe_load((folder / "plugin.yaml").read_text())
    manifest.update(name="env_bad", requirements=requirements)
    (folder / "plugin.yaml").write_text(yaml.safe_dump(manifest))
    code, out = await build_envs(tmp_path, [folder], privilege_of="root", caches=uv_caches)
    assert code == 1, out
    assert f"{folder / 'plugin.yaml'}: requirements: cannot build the Python environment" in out
    assert culprit in out
    assert reason in out
    assert list(envs_of(tmp_path).iterdir()) == []  # nothing half-built is left


def test_equal_requirement_sets_share_one_environment(tmp_path: Path, root_cache: Path) -> None:
    store = EnvironmentStore(tmp_path / "envs")
    first = store.build(["six==1.16.0"])
    assert store.build(["SIX == 1.16.0", "six==1.16.0"]) == first
    assert store.python_for(["Six==1.16.0"]) == first
    assert len(store.built()) == 1
    other = store.build(["six==1.15.0"])
    assert other != first
    assert store.built() == sorted([first.parent.parent, other.parent.parent])
    assert asyncio.run(store.ensure(["six == 1.15.0"])) == other
    record = json.loads((other.parent.parent / MARKER).read_text())
    assert record["requirements"] == ["six==1.15.0"]
    assert record["tool"] == "uv"
    # Clean-up: only the sets still wanted stay.
    assert store.prune([["Six==1.15.0"]]) == [first.parent.parent]
    assert store.built() == [other.parent.parent]
    assert store.python_for(["six==1.16.0"]) is None


def test_pip_builds_when_uv_is_not_there(tmp_path: Path) -> None:
    """The fallback: same layout, same checks, same errors (no uv involved at all)."""
    store = EnvironmentStore(tmp_path / "envs", tool="pip")
    python = store.build(["six==1.15.0"])
    done = subprocess.run(
        [str(python), "-I", "-c", "import six, rosey.sdk.runner; print(six.__version__)"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.strip() == "1.15.0"
    with pytest.raises(EnvironmentBuildFailed) as caught:
        store.build(["rosey-no-such-pkg==1.0"])
    assert caught.value.requirement == "rosey-no-such-pkg==1.0"
    assert caught.value.tool == "pip"
    assert "No matching distribution found for rosey-no-such-pkg==1.0" in caught.value.reason
    assert [p.name for p in (tmp_path / "envs").iterdir()] == [python.parent.parent.name]


def _snoop_targets(own: Path, other: Path) -> dict[str, str]:
    bot_site = Path(sysconfig.get_paths()["purelib"])  # this venv is the bot's
    (own_six,) = own.glob("lib/python*/site-packages/six.py")
    (other_six,) = other.glob("lib/python*/site-packages/six.py")
    import pydantic

    return {
        "own env": str(own),
        "own six": str(own_six),
        "other env": str(other),
        "other six": str(other_six),
        "bot site-packages": str(bot_site),
        "bot pydantic": str(Path(pydantic.__file__)),
    }


async def snoop_envs(bot: BotProcess) -> tuple[dict[str, str], set[str], Path, Path]:
    """``env_snoop`` tries each of :func:`_snoop_targets`: what it saw of each, its isolation
    layers, and its own environment and ``env_six_new``'s."""
    other = answer_prefix(await bot.chat("!sixnew"))
    (own,) = (p for p in envs_of(bot).iterdir() if p != other)
    targets = _snoop_targets(own, other)
    assert await bot.chat("!snoop " + " ".join(targets.values())) == f"snooped {len(targets)}"
    seen = json.loads((bot.state_dir / "data" / "env_snoop" / "snoop.json").read_text())
    outcome = {what: seen[path] for what, path in targets.items()}
    layers = set((await bot.manage("status", {"plugin": "env_snoop"}))["result"]["layers"])
    return outcome, layers, own, other


@pytest.mark.parametrize("landlock", [True, False])
async def test_a_plugin_reads_its_own_environment_and_no_other(
    tmp_path: Path, bot_privilege: str, uv_caches: dict[str, Path], landlock: bool
) -> None:
    """``env_snoop`` tries to read ``env_six_new``'s environment and the bot's virtualenv.

    Landlock refuses both. Switched off, the bot's virtualenv is readable (it is the bot's
    runtime, readable by others on purpose) and so is the other environment, unless the
    plugins have uids of their own: then only the plugins using an environment may enter it.
    """
    code, out = await build_envs(
        tmp_path, [SIX_NEW, SNOOP], privilege_of=bot_privilege, caches=uv_caches
    )
    assert code == 0, out
    config = f"security: {{landlock: {str(landlock).lower()}}}\n"
    async with run_bot(
        tmp_path,
        plugins_dirs=[SIX_NEW, SNOOP],
        config=config,
        unprivileged=bot_privilege == "unprivileged",
    ) as bot:
        outcome, layers, _, _ = await snoop_envs(bot)
    assert outcome["own env"] == outcome["own six"] == "allowed"
    if landlock:
        assert any(layer.startswith("landlock") for layer in layers), layers
        refused = {what: how for what, how in outcome.items() if not what.startswith("own")}
        assert refused == dict.fromkeys(refused, "refused: EACCES")
    else:
        assert not any(layer.startswith("landlock") for layer in layers), layers
        assert outcome["bot site-packages"] == outcome["bot pydantic"] == "allowed"
        by_uid = "uid" in layers
        expected = "refused: EACCES" if by_uid else "allowed"
        assert outcome["other env"] == outcome["other six"] == expected


#: Plugin uids and environment groups for the test below (2 plugins, 2 environments).
UID_RANGE = (61200, 61207)


@pytest.mark.skipif(os.geteuid() != 0, reason="per-plugin uids need a root bot")
@pytest.mark.parametrize("plugin_uids", [True, False])
async def test_an_environment_is_closed_to_other_plugin_uids(
    tmp_path: Path, uv_caches: dict[str, Path], plugin_uids: bool
) -> None:
    """With Landlock off, a root bot's per-plugin uids alone keep ``env_snoop`` out of
    ``env_six_new``'s environment: it is 0750 with a group only its users get. Its own stays
    open to it; switched off, the other one is readable too."""
    code, out = await build_envs(tmp_path, [SIX_NEW, SNOOP], privilege_of="root", caches=uv_caches)
    assert code == 0, out
    uids = range(UID_RANGE[0], UID_RANGE[1] + 1)
    add_traverse(Path(sys.executable), uids)
    add_traverse(tmp_path / "state" / "x", uids)
    config = (
        f"security: {{landlock: false, plugin_uids: {str(plugin_uids).lower()}, "
        f"plugin_uid_range: [{UID_RANGE[0]}, {UID_RANGE[1]}]}}\n"
    )
    async with run_bot(tmp_path, plugins_dirs=[SIX_NEW, SNOOP], config=config) as bot:
        outcome, layers, own, other = await snoop_envs(bot)
    assert ("uid" in layers) is plugin_uids, layers
    assert outcome["own env"] == outcome["own six"] == "allowed"
    assert outcome["bot site-packages"] == "allowed"  # the bot's runtime: Landlock's to close
    expected = "refused: EACCES" if plugin_uids else "allowed"
    assert outcome["other env"] == outcome["other six"] == expected
    if plugin_uids:
        assigned = json.loads((bot.state_dir / "uids.json").read_text())
        for env in (own, other):
            info = env.stat()
            assert (info.st_mode & 0o777, info.st_gid) == (0o750, assigned[f"env:{env.name}"])
        assert envs_of(bot).stat().st_mode & 0o777 == 0o711
