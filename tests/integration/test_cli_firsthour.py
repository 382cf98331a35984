"""The first-hour sharp edges of the CLI (issue 17), each through a real ``rosey`` process.

Item 3: a path that does not exist is an error, never "0 plugin(s) valid" or a bot with no
plugins. Item 4: a reader that goes away (``| head -1``) ends the command quietly.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from botproc import EXAMPLE_PLUGINS, FIXTURE_PLUGINS, REPO, cli_env, run_bot, run_rosey


async def test_validate_a_path_that_does_not_exist_is_a_usage_error(tmp_path: Path) -> None:
    """Issue 17 item 3: ``validate /nonexistent`` printed "0 plugin(s) valid" and exited 0."""
    code, out, err = await run_rosey("plugin", "validate", str(tmp_path / "typo"))
    assert code == 2, out + err
    assert f"{tmp_path / 'typo'}: no such file or folder" in err
    assert "valid" not in out


async def test_validate_a_folder_without_plugins_is_invalid(tmp_path: Path) -> None:
    """Issue 17 item 3: an existing folder with no plugin.yaml is no pass either."""
    (tmp_path / "empty").mkdir()
    code, out, _ = await run_rosey("plugin", "validate", str(tmp_path / "empty"))
    assert code == 1
    assert f"{tmp_path / 'empty'}: no plugin.yaml found" in out


async def test_run_with_a_plugins_dir_that_does_not_exist_refuses_to_start(
    tmp_path: Path,
) -> None:
    """Issue 17 item 3: ``run --plugins-dir /typo`` started with 0 plugins and no warning."""
    code, _, err = await run_rosey(
        "run", "--no-console", "--state-dir", str(tmp_path / "state"),
        "--plugins-dir", str(EXAMPLE_PLUGINS), "--plugins-dir", str(tmp_path / "typo"),
        timeout=30,
    )  # fmt: skip
    assert code == 2, err
    assert f"plugins folder not found: {tmp_path / 'typo'} (no such folder)" in err
    assert not (tmp_path / "state" / "runtime.json").exists()


async def test_run_with_a_config_naming_a_missing_plugins_dir_refuses_to_start(
    tmp_path: Path,
) -> None:
    config = tmp_path / "plugins.yaml"
    config.write_text("plugins_dir: [nowhere]\n")
    code, _, err = await run_rosey(
        "run", "--no-console", "--config", str(config), "--state-dir", str(tmp_path / "state"),
        cwd=tmp_path, timeout=30,
    )  # fmt: skip
    assert code == 2, err
    assert "plugins folder not found: nowhere (no such folder)" in err


async def closed_pipe(*args: str, cwd: Path | None = None) -> tuple[int, str]:
    """Run ``rosey ARGS`` with stdout a pipe whose reading end is already closed."""
    read, write = os.pipe()
    os.close(read)
    try:
        code, _, err = await run_rosey(*args, cwd=cwd, stdout=write)
    finally:
        os.close(write)
    return code, err


async def test_a_closed_pipe_ends_validate_quietly() -> None:
    """Issue 17 item 4: ``rosey ... | head -1`` printed a BrokenPipeError traceback, exit 1."""
    code, err = await closed_pipe("plugin", "validate", str(EXAMPLE_PLUGINS))
    assert (code, err) == (141, "")
    code, err = await closed_pipe("--help")  # argparse swallows the error itself: exit 0
    assert err == ""


async def test_a_closed_pipe_ends_plugin_list_quietly(tmp_path: Path) -> None:
    """Issue 17 item 4, with a running bot: ``rosey plugin list | head -1``."""
    async with run_bot(tmp_path) as bot:
        code, err = await closed_pipe("plugin", "list", "--state-dir", str(bot.state_dir))
        assert (code, err) == (141, "")
        # Issue 17 item 10: "dice (pid None): stopped → starting" said what is not known.
        await bot.manage("restart", {"plugin": "dice"})
        await bot.wait_for_log("dice (pid ", timeout=10)
        assert not [line for line in bot.log if "(pid None)" in line]
        assert [line for line in bot.log if "dice: stopped → starting" in line]


async def test_run_reports_every_config_problem_with_its_line(tmp_path: Path) -> None:
    """Issue 17 item 5: config errors came one at a time, in pydantic's words."""
    config = tmp_path / "plugins.yaml"
    config.write_text("max_crash_count: -1\nplugins:\n  dice:\n    enabled: maybe\ncolour: red\n")
    code, _, err = await run_rosey(
        "run", "--no-console", "--config", str(config), "--state-dir", str(tmp_path / "s"),
        cwd=tmp_path, timeout=30,
    )  # fmt: skip
    assert code == 2, err
    lines = err.splitlines()
    assert lines[:2] == [
        f"rosey: {config}:1: max_crash_count: -1 is not allowed; expected a whole number "
        "at least 0",
        f"rosey: {config}:4: plugins.dice.enabled: 'maybe' is not allowed; expected true or false",
    ]
    assert lines[2].startswith(
        f"rosey: {config}:5: colour: unknown key; allowed keys here: plugins_dir, "
    )
    assert len(lines) == 3


async def test_several_names_all_help_and_completion_with_a_bot(tmp_path: Path) -> None:
    """Issue 17 items 7 and 8 against one running bot: several names and ``all``; ``plugin
    help`` with the plugins' commands; ``!help`` with one line each and ``!help roll``; plugin
    names completed in bash. Item 9: ``!quote add "so good" ann said`` kept as typed."""
    async with run_bot(tmp_path) as bot:
        state = ("--state-dir", str(bot.state_dir))
        code, out, err = await run_rosey("plugin", "stop", "dice", "quote", *state)
        assert code == 0, out + err
        assert (await bot.manage("status", {"plugin": "dice"}))["result"]["state"] == "stopped"
        assert (await bot.manage("status", {"plugin": "quote"}))["result"]["state"] == "stopped"
        code, out, err = await run_rosey("plugin", "start", "dice", "nosuch", "quote", *state)
        assert code == 1, out + err
        assert "nosuch" in err
        assert (await bot.manage("status", {"plugin": "quote"}))["result"]["state"] == "running"

        listed = (await bot.manage("list"))["result"]["plugins"]
        names = [p["name"] for p in listed]
        code, out, err = await run_rosey("plugin", "status", *state)  # no name: every plugin
        assert code == 0, err
        for name in names:
            assert f"\n{name} " in f"\n{out}" or f"{name}:" in out, (name, out)
        code, out, err = await run_rosey("plugin", "restart", "all", "--json", *state)
        assert code == 0, err
        replies = json.loads(out)
        assert [r["result"]["name"] for r in replies] == names
        assert all(r["ok"] for r in replies)

        code, out, err = await run_rosey("plugin", "help", *state)
        assert code == 0, err
        assert "Chat commands of the running bot" in out
        assert "!roll " in out
        assert "Roll dice" in out

        listing = await bot.chat("!help")  # the first of its chat messages
        assert "Commands (!help COMMAND for its usage):" in listing
        assert "\n!flip — Flip a coin: heads or tails.\n" in listing
        assert await bot.chat("!help roll") == (
            "usage: !roll [NdM[+K]], e.g. !roll 2d6+3 — Roll dice: NdM is N dice with M sides, "
            "plus K. (plugin dice)"
        )
        assert await bot.chat("!help nope") == "no command !nope here (try !help)"

        assert await bot.chat('!quote add "so good" ann said') == "quote #1 added"
        assert await bot.chat("!quote 1") == '#1: "so good" ann said (added by tester)'

        words = await complete(f"rosey plugin stop --state-dir {bot.state_dir} d")
        assert words == ["dice"]
        words = await complete(f"rosey plugin restart --state-dir {bot.state_dir} ")
        assert sorted(words) == sorted([*names, "all"])


async def complete(line: str, shell: str = "bash") -> list[str]:
    """What bash completes for ``line`` (the last word being typed), with our script loaded."""
    code, script, err = await run_rosey("completion", shell)
    assert code == 0, err
    words = line.split(" ")
    program = (
        f"{script}\n"
        f"COMP_WORDS=({' '.join(repr(w) for w in words)}); COMP_CWORD={len(words) - 1}\n"
        '_rosey; printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    env = {**cli_env(), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    proc = await asyncio.create_subprocess_exec(
        "bash", "-c", program, env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(30):
        out, err_bytes = await proc.communicate()
    assert proc.returncode == 0, err_bytes.decode()
    return [w for w in out.decode().splitlines() if w]


async def test_completion_without_a_bot(tmp_path: Path) -> None:
    """Issue 17 item 7: commands and actions complete offline; names offer just ``all``."""
    assert await complete("rosey pl") == ["plugin"]
    assert sorted(await complete("rosey plugin re")) == sorted(
        w for w in await complete("rosey plugin ") if w.startswith("re")
    )
    assert "restart" in await complete("rosey plugin re")
    assert await complete(f"rosey plugin stop --state-dir {tmp_path} ") == ["all"]
    assert "--json" in await complete("rosey plugin stop --")
    code, script, _ = await run_rosey("completion", "zsh")
    assert code == 0
    assert script.startswith("#compdef rosey\n")


async def test_version_and_offline_help(tmp_path: Path) -> None:
    """Issue 17 item 7: ``--version``; ``plugin help`` without a bot; ``logs --help`` in words."""
    from rosey import __version__

    code, out, _ = await run_rosey("--version")
    assert (code, out) == (0, f"rosey {__version__}\n")
    code, out, err = await run_rosey("plugin", "help", cwd=tmp_path)
    assert code == 0, err
    assert "restart NAME" in out
    assert "logs NAME [N]" in out
    assert "plugin commands not shown: no running bot found" in err
    code, out, _ = await run_rosey("plugin", "help", "logs", cwd=tmp_path)
    assert code == 0
    assert out.startswith("usage: rosey plugin logs NAME [N]\nShow the last N lines")
    code, out, _ = await run_rosey("plugin", "logs", "--help")
    assert "Result:" not in out
    assert "cursor" not in out
    assert "Show the last N lines (default 50) of a plugin's log" in out


async def test_validate_finds_handlers_commands_and_dependencies_that_do_not_match(
    tmp_path: Path,
) -> None:
    """Issue 17 item 14: validate missed commands listed without a handler, handlers not
    listed and unknown dependencies; its problems had no line numbers. The plugin's code is
    read, never run: importing it here would raise."""
    folder = tmp_path / "plugins" / "games"
    folder.mkdir(parents=True)
    (folder / "plugin.yaml").write_text(
        "name: games\nversion: 1.0.0\nentrypoint: games:Games\n"
        "commands:\n  - roll\n  - flip\ndependencies: [ghost]\n"
    )
    (folder / "games.py").write_text(
        "raise SystemExit('plugin code must not run in validate')\n"
        "from rosey.sdk import Plugin, command\n\n"
        "class Base(Plugin):\n"
        "    @command('roll')\n"
        "    async def roll(self, ctx): ...\n\n"
        "class Games(Base):\n"
        "    @command('dance', help='dance a little')\n"
        "    async def dance(self, ctx): ...\n"
    )
    manifest = folder / "plugin.yaml"
    code, out, err = await run_rosey("plugin", "validate", str(tmp_path / "plugins"))
    assert code == 1, out + err
    assert out.splitlines() == [
        f"{manifest}:6: commands.1: !flip has no handler: games:Games has no method decorated "
        '@command("flip") (add one, or remove it here)',
        f"{manifest}:4: commands: Games.dance handles !dance, which is not listed here: the "
        "bot never sends it (add 'dance')",
        f"{manifest}:7: dependencies.0: no plugin 'ghost' among those found (games): plugin "
        "'games' would never start (validate its folder too, or remove it here)",
    ]


async def test_validate_reports_every_manifest_problem_with_its_line(tmp_path: Path) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "plugin.yaml").write_text(
        "name: bad\nversion: one\nentrypoint: m:P\nlimits:\n  memory_mb: 8\n  swap: 1\n"
    )
    (folder / "m.py").write_text("class P: ...\n")
    code, out, _ = await run_rosey("plugin", "validate", str(folder))
    assert code == 1
    manifest = folder / "plugin.yaml"
    assert out.splitlines() == [
        f"{manifest}:2: version: 'one' is not allowed; expected a semantic version such as 1.0.0",
        f"{manifest}:5: limits.memory_mb: 8 is not allowed; expected a whole number from 16 to "
        "1048576",
        f"{manifest}:6: limits.swap: unknown key; allowed keys here: memory_mb, cpu_percent, "
        "max_processes, open_files, data_mb",
    ]


async def test_status_draws_a_plugins_traceback_with_one_bar(tmp_path: Path) -> None:
    """Issue 17 item 14: nested tracebacks in status rendered as ``|   |``."""
    async with run_bot(tmp_path, plugins_dirs=(FIXTURE_PLUGINS / "crash_on_start",)) as bot:
        code, out, err = await run_rosey(
            "plugin", "status", "crash_on_start", "--state-dir", str(bot.state_dir)
        )
    assert code == 0, err
    assert "    | Traceback (most recent call last):" in out, out
    assert "|   |" not in out


async def test_the_cli_finds_a_bot_from_a_subfolder(tmp_path: Path, nats_url: str) -> None:
    """Issue 17 item 6: the CLI looked only in ``./.rosey``; it searches upward now."""
    state = tmp_path / "project" / ".rosey"
    state.mkdir(parents=True)
    runtime = {"pid": os.getpid(), "nats_url": nats_url, "user": None, "password": None}
    (state / "runtime.json").write_text(json.dumps(runtime))
    deep = tmp_path / "project" / "src" / "deep"
    deep.mkdir(parents=True)
    code, _, err = await run_rosey("plugin", "list", "--timeout", "2", cwd=deep)
    assert code == 3  # a NATS server without a bot: but this is the one it found
    assert f"no running bot could be reached at {nats_url} (from {state / 'runtime.json'})" in err


async def test_the_cli_finds_the_users_last_bot_from_anywhere(tmp_path: Path) -> None:
    """Issue 17 item 6: a bot notes its state folder per user; the CLI finds it from any
    folder, and the note is gone after a clean stop."""
    from rosey.api.client import user_record

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    async with run_bot(tmp_path) as bot:
        assert user_record().read_text().strip() == str(bot.state_dir)
        code, out, err = await run_rosey("plugin", "list", cwd=elsewhere)
        assert code == 0, err
        assert "dice" in out
        code, out, err = await run_rosey("logs", "-n", "5", cwd=elsewhere)  # its files too
        assert code == 0, err
        assert "ROSEY" in out
        assert await bot.terminate() == 0
    assert not user_record().exists()
    code, _, err = await run_rosey("plugin", "list", cwd=elsewhere)
    assert code == 3
    # Every place it looked.
    assert f"no .rosey/runtime.json in {elsewhere} or a folder above it; " in err
    assert f"no bot noted in {user_record()} (where 'rosey run' notes the last one" in err


async def test_schema_command_prints_the_published_schemas() -> None:
    """Issue 17 item 15: ``rosey schema plugin|config`` is what docs/schema/ publishes."""
    from rosey.cli.schema import SCHEMA_FILES

    for which, path in SCHEMA_FILES.items():
        code, out, err = await run_rosey("schema", which)
        assert code == 0, err
        assert out == (REPO / path).read_text(), f"{path}: ROSEY_REGEN_DOCS=1 regenerates it"
