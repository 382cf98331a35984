"""The bot imports what a running bot uses, when it first uses it (issue 13: manager RSS).

A fresh interpreter imports ``rosey.bot`` (then builds what the HTTP face builds when the bot
starts with it on); none of the modules below may be loaded then. Each is a path the running
bot takes only on demand: the HTTP face (``http: null`` never loads it), installing or
updating (archives, version ranges, renameat2), plugins with ``requirements`` or a
``config_schema``, a sampler without a cgroup, a metrics scrape. A test that fails here means
someone added an eager import back: move it into the function that needs it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from botproc import EXAMPLE_PLUGINS, run_bot
from httpface import HTTP_ON, http_api
from rosey.sandbox.host import CgroupHost, detect_host

#: Modules (and what pulled them in before) a bot that has only started must not have loaded.
ON_DEMAND = {
    "aiohttp": "rosey.api.http.app (the face served HTTP with aiohttp.web before h11)",
    "rosey.api.http": "rosey.bot (the face is imported where it is started)",
    "h11": "rosey.api.http.server (the face's HTTP parser, loaded when the face starts)",
    "tarfile": "rosey.plugins.unpack (installing an archive)",
    "packaging": "rosey.plugins.requirements / install_rules (requirements, requires_rosey)",
    "jsonschema": "rosey.plugins.schema_check (a plugin's config_schema)",
    "psutil": "rosey.sandbox.stats / plugin_process / api.http.metrics (no cgroup, a scrape)",
    "prometheus_client": "rosey.api.http.metrics (the first scrape or command outcome)",
    "http.server": "prometheus_client (its exposition server)",
    "wsgiref": "prometheus_client (its WSGI app)",
    "gzip": "prometheus_client (compressed exposition)",
    "ctypes.util": "rosey.plugins.store (renameat2 for a reload's swap)",
    "importlib.metadata": "nats-py's version and pydantic's plugin lookups (both ~1.5 MiB)",
    "rosey.sandbox.environments": "rosey.manager.spawnspec (a plugin with requirements)",
    "rosey.manager.installer": "rosey.api.actions.install/update/remove/rollback (when run)",
    # The config and manifests are read and checked in the checker process (rosey.checker):
    # the bot holds records (issue 13: ~10 MiB of the manager, and no plugin YAML parsed here).
    "pydantic": "rosey.config / rosey.protocol.manifest (their models were pydantic's)",
    "pydantic_core": "pydantic (its Rust core: a shared library, its heap, a validator per model)",
    "yaml": "rosey.config / rosey.protocol.problems (the bot read the YAML files itself)",
    "decimal": "pydantic (its number types)",
    "zoneinfo": "pydantic (its datetime types)",
    "rosey.config_schema": "rosey.config (the config's models)",
    "rosey.protocol.manifest_schema": "rosey.protocol.manifest (the manifest's models)",
    "rosey.protocol.problems": "rosey.plugins.discovery (pydantic's errors in our words)",
}

#: Modules the management API never needs (issue 13: pydantic is ~10 MiB of the manager): its
#: request models are ``rosey.api.requests`` models. A bot that has answered ``list``,
#: ``status``, ``logs``, ``start``, ... must not have loaded them for that.
API_NEVER = {
    "pydantic": "rosey.api.action / rosey.api.actions.* (the request models were pydantic's)",
    "pydantic_core": "pydantic (its Rust core: a shared library, its heap, a validator per model)",
    "annotated_types": "pydantic (Field constraints)",
    "typing_inspection": "pydantic (annotation inspection)",
}

#: Every top-level module a started bot has loaded beyond a bare ``python -I`` (issue 13, row 5:
#: the manager's RSS). Grouped by what pulls them in; each costs resident memory for as long as
#: the bot runs (code objects, C extensions and the libraries they link). A module that is not
#: here fails ``test_the_bot_loads_no_new_top_level_module``: import it where it is used, or
#: measure what it costs the idle bot (``smaps_rollup``) and add it with the reason.
IDLE_TOP_LEVEL = frozenset(
    {
        # asyncio and the standard library it and logging pull in (ssl: asyncio.sslproto, nats).
        *("__future__", "_asyncio", "_contextvars", "_heapq", "_opcode", "_posixsubprocess"),
        *("_socket", "_ssl", "_string", "_struct", "_typing", "_weakrefset", "array", "ast"),
        *("_ast", "asyncio", "atexit", "base64", "binascii", "concurrent", "contextlib"),
        *("contextvars", "dis", "errno", "fcntl", "heapq", "importlib", "inspect", "linecache"),
        *("locale", "_locale", "logging", "math", "opcode", "select", "selectors", "signal"),
        *("socket", "ssl", "string", "struct", "subprocess", "textwrap", "threading", "token"),
        *("tokenize", "traceback", "typing", "warnings", "weakref"),
        # pathlib, and urllib.parse (nats URLs; it imports ipaddress).
        *("fnmatch", "ntpath", "pathlib", "urllib", "ipaddress"),
        # nats-py (its JetStream client parses headers with email.parser).
        *("nats", "email", "calendar", "quopri", "_datetime", "datetime"),
        # nats-py's message ids (uuid, which imports platform) and its NUID (secrets, random).
        *("uuid", "_uuid", "platform", "secrets"),
        *("hmac", "hashlib", "_hashlib", "_blake2", "random", "_random", "_sha512", "bisect"),
        *("_bisect", "copy", "dataclasses"),
        # The sandbox and the manager: libc calls, ids, limits, the cgroup leaf remover's queue.
        *("ctypes", "_ctypes", "gc", "grp", "pwd", "resource", "queue", "_queue", "zlib"),
        # shutil (it imports bz2 and lzma), and pkgutil (the API actions' registry).
        *("shutil", "bz2", "_bz2", "lzma", "_lzma", "_compression", "pkgutil"),
    }
)

SCRIPT = """
import json, sys
import rosey.bot
from rosey.config import BotConfig, LimitsOverride, PluginOverride
from rosey.protocol.record import decode, encode
# A config as the checker's answer brings it at start.
decode(encode(BotConfig(plugins={"dice": PluginOverride(limits=LimitsOverride(memory_mb=64))})))
loaded = set(sys.modules)
from rosey.api.http.metrics import Metrics
Metrics(lambda name: True)  # what the HTTP face builds when the bot starts with it
loaded |= {m for m in sys.modules if m.split(".")[0] not in ("aiohttp", "rosey")}
print(json.dumps(sorted(loaded)))
"""


@pytest.fixture(scope="module")
def loaded() -> set[str]:
    # A subprocess: this test session has imported half the world already.
    out = subprocess.run(
        [sys.executable, "-I", "-c", SCRIPT], capture_output=True, text=True, check=True, timeout=60
    )
    return set(json.loads(out.stdout))


@pytest.mark.parametrize("module", sorted(ON_DEMAND))
def test_the_bot_does_not_import_it_before_it_is_needed(loaded: set[str], module: str) -> None:
    assert "rosey.bot" in loaded
    assert module not in loaded, f"{module} is imported with the bot (was: {ON_DEMAND[module]})"


def test_the_bot_loads_no_new_top_level_module(loaded: set[str]) -> None:
    """The idle bot's import set does not regrow: every top-level module it loads beyond a bare
    interpreter is one of ``IDLE_TOP_LEVEL`` (a new one is memory the manager keeps for days)."""
    bare = subprocess.run(
        [sys.executable, "-I", "-c", "import json, sys; print(json.dumps(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    before = {m.split(".")[0] for m in json.loads(bare.stdout)}
    new = {m.split(".")[0] for m in loaded} - before - {"rosey"} - IDLE_TOP_LEVEL
    assert not new, (
        f"a started bot now also loads {', '.join(sorted(new))}: import it where it is used, "
        "or measure its memory and add it to IDLE_TOP_LEVEL"
    )


def test_what_is_on_demand_still_loads_where_it_is_used() -> None:
    """The on-demand imports work: each path imports its module when it runs."""
    script = """
import sys
from pathlib import Path
from rosey.plugins.requirements import normal_set
from rosey.plugins.install_rules import rosey_version_problem
from rosey.plugins.unpack import source_kind
from rosey.api.http.metrics import Metrics, families
import asyncio
assert normal_set(["Six == 1.16.0"]) == ("six==1.16.0",)
assert rosey_version_problem(">=99", "1.0") is not None
assert source_kind(Path(sys.executable).parent) == "folder"
metrics = Metrics(lambda name: True)
assert metrics.commands.observe("p", "ok", {"duration_ms": 5})
text = asyncio.run(metrics.render(families([], broker_connected=True, event_clients=0)))
assert b"rosey_commands_total" in text and b"rosey_broker_connected 1.0" in text
for module in ("packaging", "prometheus_client"):
    assert module in sys.modules, module
"""
    subprocess.run([sys.executable, "-I", "-c", script], check=True, timeout=60)


@pytest.mark.parametrize(("config", "face"), [("http: null\n", False), (HTTP_ON, True)])
async def test_a_running_bot_never_loads_aiohttp_even_with_its_http_face(
    tmp_path: Path, config: str, face: bool
) -> None:
    """What the bot has loaded, seen from outside: no aiohttp (nor its multidict and yarl) C
    extension in its memory map, with the face serving (issue 13: ~15 MiB of the manager)."""
    async with run_bot(tmp_path, plugins_dirs=[EXAMPLE_PLUGINS / "dice"], config=config) as bot:
        assert (bot.runtime.get("http_url") is not None) == face
        if face:
            async with http_api(bot) as api:
                status, body = await api.get("/api/plugins/dice")
            assert (status, body["result"]["state"]) == (200, "running")
        maps = memory_map(bot.pid)
    for library in ("aiohttp", "multidict", "yarl"):
        assert library not in maps, f"the bot loaded {library}"


def test_nats_still_reports_its_own_version() -> None:
    """nats-py is imported without importlib.metadata; the client version it sends the broker
    is still its own, not its fallback "0.0.0"."""
    script = """
import sys
import rosey.bus
import nats.aio.client
assert "importlib.metadata" not in sys.modules
import importlib.metadata
assert nats.aio.client.__version__ == importlib.metadata.version("nats-py") != "0.0.0"
"""
    subprocess.run([sys.executable, "-I", "-c", script], check=True, timeout=60)


async def test_a_running_bot_reads_no_package_metadata(tmp_path: Path) -> None:
    """Nothing in a running bot looks installed packages up (importlib.metadata, ~1.5 MiB of an
    idle manager): seen from outside, the C half of ``csv``, which only it imports here."""
    async with run_bot(
        tmp_path, plugins_dirs=[EXAMPLE_PLUGINS / "dice"], config="http: null\n"
    ) as bot:
        # A management request too: it builds its request model (deferred until first used).
        reply = await bot.manage("status", {"plugin": "dice"})
        assert reply["result"]["state"] == "running"
        maps = memory_map(bot.pid)
    assert "/_csv." not in maps, "the bot imported importlib.metadata (its csv is mapped)"


def counts_plugins(host: CgroupHost) -> bool:
    """Cgroups here count a plugin's CPU, memory and tasks (``PluginCgroup.counters``)."""
    cpu = host.controllers.get("cpu")
    cpu_counted = host.unified is not None or (
        cpu is not None and (cpu[1] / "cpuacct.usage").exists()
    )
    return cpu_counted and "memory" in host.controllers and "pids" in host.controllers


async def test_status_and_stop_use_the_cgroup_without_psutil(tmp_path: Path) -> None:
    """``list`` and ``status`` (asked all the time: dashboards, ``rosey top``, benches) sample a
    plugin through its cgroup's counters, as the health monitor does, and a stop kills what is
    left through the cgroup: psutil (0.3-0.4 MiB of a manager with 100 plugins, a handle per
    process; ~10 ms of CPU to import, in the middle of stopping every plugin) is not loaded
    where cgroups count and hold them."""
    host = detect_host()
    if not counts_plugins(host):
        pytest.skip(f"no cgroups here count a plugin's CPU, memory and tasks: {host.notes}")
    async with run_bot(tmp_path, plugins_dirs=[EXAMPLE_PLUGINS / "dice"], config=HTTP_ON) as bot:
        listed = await bot.manage("list")
        status = await bot.manage("status", {"plugin": "dice"})
        maps = memory_map(bot.pid)
        stopped = await bot.manage("stop", {"plugin": "dice"})
        after_stop = memory_map(bot.pid)
    assert [p["name"] for p in listed["result"]["plugins"]] == ["dice"]
    stats = status["result"]["stats"]
    assert stats["running"], stats
    assert stats["memory_mb"] > 0, stats
    assert "_psutil_linux" not in maps, "status walked /proc with psutil"
    assert stopped["ok"], stopped
    assert "_psutil_linux" not in after_stop, "the stop walked /proc with psutil"


def memory_map(pid: int) -> str:
    with open(f"/proc/{pid}/maps") as maps:
        return maps.read()


API_SCRIPT = """
import builtins, json, sys
NEVER = set(json.loads(sys.argv[1]))
importers = []
real_import = builtins.__import__

def tracing_import(name, globals=None, locals=None, fromlist=(), level=0):
    # Who asks, even when the module is loaded already (sys.modules would not say).
    importer = (globals or {}).get("__name__", "?")
    if level == 0 and name.split(".")[0] in NEVER and importer.split(".")[0] not in NEVER:
        importers.append(f"{importer} imports {name}")
    return real_import(name, globals, locals, fromlist, level)

builtins.__import__ = tracing_import
from rosey.api.actions import ACTIONS
from rosey.errors import BadRequest
SAMPLE = {str: ("dice", "dice"), int: (7, "7"), bool: (True, "yes")}
for action in ACTIONS.values():
    fields = action.request.model_fields
    for strict in (True, False):
        body = {n: SAMPLE[f.kind][0 if strict else 1] for n, f in fields.items() if f.is_required()}
        action.parse(body, strict=strict)
        try:
            action.parse({**body, "no_such_field": 1}, strict=strict)
        except BadRequest:
            pass
        else:
            raise AssertionError(f"{action.name} took an unknown field")
loaded = sorted({m.split(".")[0] for m in sys.modules} & NEVER)
print(json.dumps({"loaded": loaded, "importers": importers}))
"""


def test_the_management_api_parses_requests_without_pydantic() -> None:
    """Every action's request model is built and checked (both modes, a good and a bad request)
    in a fresh interpreter without loading pydantic: a request model or an action module that
    imports it again fails here, naming who imports it."""
    out = subprocess.run(
        [sys.executable, "-I", "-c", API_SCRIPT, json.dumps(sorted(API_NEVER))],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    found = json.loads(out.stdout)
    assert not found["importers"], f"the management API imports pydantic: {found['importers']}"
    assert not found["loaded"], f"loaded with the management API: {found['loaded']}"


async def test_a_bot_that_answered_management_requests_has_not_loaded_pydantic(
    tmp_path: Path,
) -> None:
    """Seen from outside, after ``list``, ``status``, ``logs``, ``help``, ``stop``, ``start``
    and a malformed request (NATS and HTTP): pydantic's core library is not in the bot's
    memory map (every pydantic import loads it first; ``API_NEVER``)."""
    async with run_bot(tmp_path, plugins_dirs=[EXAMPLE_PLUGINS / "dice"], config=HTTP_ON) as bot:
        assert (await bot.manage("list"))["ok"]
        assert (await bot.manage("status", {"plugin": "dice"}))["ok"]
        assert (await bot.manage("logs", {"plugin": "dice", "lines": 5}))["ok"]
        assert (await bot.manage("help"))["ok"]
        bad = await bot.manage("logs", {"plugin": "dice", "lines": 0})
        assert bad["error"]["code"] == "bad_request", bad
        assert (await bot.manage("stop", {"plugin": "dice"}))["ok"]
        assert (await bot.manage("start", {"plugin": "dice"}))["ok"]
        async with http_api(bot) as api:
            status, body = await api.get("/api/plugins/dice/logs?lines=3")
        assert status == 200, body
        maps = memory_map(bot.pid)
    assert "_pydantic_core" not in maps, "the bot loaded pydantic"
    assert "/yaml/_yaml." not in maps, "the bot parsed YAML itself (the checker does)"
