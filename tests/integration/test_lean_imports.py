"""The bot imports what a running bot uses, when it first uses it (issue 13: manager RSS).

A fresh interpreter imports ``rosey.bot`` (then builds what the HTTP face builds when the bot
starts with it on); none of the modules below may be loaded then. Each is a path the running
bot takes only on demand: the HTTP face (``http: null`` never loads aiohttp), installing or
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

#: Modules (and what pulled them in before) a bot that has only started must not have loaded.
ON_DEMAND = {
    "aiohttp": "rosey.api.http.app (imported by the bot when the HTTP face is on)",
    "rosey.api.http": "rosey.bot (the face is imported where it is started)",
    "tarfile": "rosey.plugins.unpack (installing an archive)",
    "packaging": "rosey.plugins.requirements / install_rules (requirements, requires_rosey)",
    "jsonschema": "rosey.plugins.schema_check (a plugin's config_schema)",
    "psutil": "rosey.sandbox.stats / plugin_process / api.http.metrics (no cgroup, a scrape)",
    "prometheus_client": "rosey.api.http.metrics (the first scrape or command outcome)",
    "http.server": "prometheus_client (its exposition server)",
    "wsgiref": "prometheus_client (its WSGI app)",
    "gzip": "prometheus_client (compressed exposition)",
    "ctypes.util": "rosey.plugins.store (renameat2 for a reload's swap)",
}

SCRIPT = """
import json, sys
import rosey.bot
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


@pytest.mark.parametrize(("config", "face"), [("http: null\n", False), (None, True)])
async def test_a_running_bot_loads_aiohttp_only_for_its_http_face(
    tmp_path: Path, config: str | None, face: bool
) -> None:
    """What the bot has loaded, seen from outside: aiohttp's C parser in its memory map."""
    async with run_bot(tmp_path, plugins_dirs=[EXAMPLE_PLUGINS / "dice"], config=config) as bot:
        maps = memory_map(bot.pid)
    assert ("aiohttp" in maps) == face


def memory_map(pid: int) -> str:
    with open(f"/proc/{pid}/maps") as maps:
        return maps.read()
