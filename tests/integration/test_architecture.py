"""The seams of DESIGN §3 that import contracts cannot see.

``.importlinter`` (run by ``./dev test`` before pytest) checks who imports whom. Two rules need
more than that:

- **Only ``sandbox/`` spawns processes.** ``asyncio.create_subprocess_exec`` and ``os.fork`` live
  in modules every package imports (``asyncio``, ``os``), so the spawning calls themselves are
  looked for in the source, by its syntax tree.
- **The plugin process's import path stays lean.** Its import time is every plugin's start time;
  what a real process has loaded after importing the runner is what counts.

Both read files or start a process, so they live here rather than in ``tests/unit``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "rosey"

#: Where processes may be started from: the one package that owns spawning, limits and reaping.
SPAWNING_PACKAGE = "sandbox"

#: Known exceptions, each with the issue that removes it. An entry that no longer matches fails
#: the test, so it is deleted once the code moves.
KNOWN_SPAWNERS: dict[str, str] = {}

#: Modules whose import means starting processes.
SPAWN_MODULES = frozenset({"subprocess", "multiprocessing", "pty"})
#: Attributes that start a process whatever object they hang off (asyncio and its loops).
SPAWN_ATTRIBUTES = frozenset(
    {
        "create_subprocess_exec",
        "create_subprocess_shell",
        "subprocess_exec",
        "subprocess_shell",
        "ProcessPoolExecutor",
    }
)
#: ``os`` functions that fork, exec or spawn.
OS_SPAWNERS = frozenset(
    {"fork", "forkpty", "posix_spawn", "posix_spawnp", "system", "popen"}
    | {f"exec{suffix}" for suffix in ("l", "le", "lp", "lpe", "v", "ve", "vp", "vpe")}
    | {f"spawn{suffix}" for suffix in ("l", "le", "lp", "lpe", "v", "ve", "vp", "vpe")}
)


def spawn_sites(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """``(line, what)`` for every place in ``tree`` that starts, or imports the means to start,
    a process."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in SPAWN_MODULES:
                    yield node.lineno, f"import {alias.name}"
        elif isinstance(node, ast.ImportFrom) and node.module:
            top = node.module.split(".")[0]
            names = {alias.name for alias in node.names}
            if top in SPAWN_MODULES:
                yield node.lineno, f"from {node.module} import ..."
            elif top == "asyncio" and "subprocess" in names:
                yield node.lineno, "from asyncio import subprocess"
            for name in sorted(
                names & (SPAWN_ATTRIBUTES | (OS_SPAWNERS if top == "os" else set()))
            ):
                yield node.lineno, f"from {node.module} import {name}"
        elif isinstance(node, ast.Attribute):
            if node.attr in SPAWN_ATTRIBUTES:
                yield node.lineno, f".{node.attr}"
            elif (
                node.attr in OS_SPAWNERS
                and isinstance(node.value, ast.Name)
                and node.value.id == "os"
            ):
                yield node.lineno, f"os.{node.attr}"


def spawners() -> dict[str, list[str]]:
    """Every module outside ``sandbox/`` that spawns: its path under ``src/rosey`` → the sites."""
    found: dict[str, list[str]] = {}
    for path in sorted(SRC.rglob("*.py")):
        relative = path.relative_to(SRC).as_posix()
        if relative.startswith(f"{SPAWNING_PACKAGE}/"):
            continue
        sites = [f"line {line}: {what}" for line, what in spawn_sites(ast.parse(path.read_text()))]
        if sites:
            found[relative] = sites
    return found


def test_the_spawn_finder_sees_each_way_of_spawning() -> None:
    """The finder itself, on code that spawns in each way it knows and on code that does not."""
    code = (
        "import subprocess\n"
        "import multiprocessing.pool\n"
        "from pty import spawn\n"
        "from asyncio import subprocess as aio_subprocess\n"
        "from asyncio import create_subprocess_exec\n"
        "from os import fork, execvp, getpid\n"
        "async def f(loop):\n"
        "    await asyncio.create_subprocess_shell('x')\n"
        "    await loop.subprocess_exec(lambda: None, 'x')\n"
        "    os.posix_spawn('x', [], {})\n"
        "    os.getpid(); os.kill(1, 0); asyncio.sleep(0)\n"
        "    other.system('not os')\n"
    )
    whats = sorted(what for _, what in spawn_sites(ast.parse(code)))
    assert whats == sorted(
        [
            "import subprocess",
            "import multiprocessing.pool",
            "from pty import ...",
            "from asyncio import subprocess",
            "from asyncio import create_subprocess_exec",
            "from os import execvp",
            "from os import fork",
            ".create_subprocess_shell",
            ".subprocess_exec",
            "os.posix_spawn",
        ]
    )


def test_only_the_sandbox_spawns_processes() -> None:
    """Processes started elsewhere escape the sandbox's limits, process groups and reaping."""
    found = spawners()
    unexpected = {path: sites for path, sites in found.items() if path not in KNOWN_SPAWNERS}
    assert unexpected == {}, (
        f"only src/rosey/{SPAWNING_PACKAGE}/ may start processes; spawn through its Spawner "
        f"(or add a known exception here with the issue that removes it): {unexpected}"
    )
    stale = sorted(set(KNOWN_SPAWNERS) - set(found))
    assert stale == [], f"these no longer spawn: delete them from KNOWN_SPAWNERS: {stale}"


#: What starts a server or the bot for a test: fixtures (as parameters) and helper modules.
SERVER_FIXTURES = frozenset({"nats_server", "nats_url"})
SERVER_MODULES = frozenset({"botproc", "rosey.bus.server"})


def io_sites(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """Spawn sites, plus every test that asks for a server and every import of the bot's runner."""
    yield from spawn_sites(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            args = node.args.posonlyargs + node.args.args + node.args.kwonlyargs
            for arg in args:
                if arg.arg in SERVER_FIXTURES:
                    yield node.lineno, f"{node.name}({arg.arg})"
        elif isinstance(node, ast.Import | ast.ImportFrom):
            modules = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
            )
            for module in modules:
                if module in SERVER_MODULES:
                    yield node.lineno, f"import {module}"


def test_unit_tests_start_no_process_and_no_server() -> None:
    """``tests/unit`` is the fast, pure half of the suite; processes and servers belong in
    ``tests/integration``."""
    unit = SRC.parents[1] / "tests" / "unit"
    found = {
        path.relative_to(unit).as_posix(): [
            f"line {line}: {what}" for line, what in io_sites(ast.parse(path.read_text()))
        ]
        for path in sorted(unit.rglob("*.py"))
    }
    offenders = {name: sites for name, sites in found.items() if sites}
    assert offenders == {}, f"move these tests to tests/integration: {offenders}"


def test_runner_import_path_has_no_heavy_modules() -> None:
    """Every plugin pays for what the runner imports: no pydantic, yaml, psutil or manager,
    nor the CLI's terminal views (curses, ``rosey top``, ``rosey logs``), nor the HTTP face's
    web server and metrics (``rosey.api.http``, ``aiohttp``, prometheus_client). nats-py would
    import aiohttp for its websocket transport (~150 ms, half a plugin's start) if
    ``rosey.bus.client`` did not keep it from doing so."""
    code = (
        "import sys, rosey.sdk.runner, rosey.sdk;"
        "heavy = [m for m in ('pydantic', 'yaml', 'psutil', 'rosey.manager', 'rosey.config',"
        " 'rosey.bus.server', 'rosey.protocol.manifest', 'curses',"
        " 'rosey.api.top',"
        " 'rosey.api.logstream', 'rosey.api.http', 'aiohttp', 'prometheus_client')"
        " if m in sys.modules];"
        "print(','.join(heavy))"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == ""
