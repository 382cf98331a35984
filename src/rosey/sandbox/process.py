"""Spawning and stopping plugin processes: the names the rest of Rosey imports.

The pieces live in their own modules:

- ``rosey.sandbox.spec``: ``SpawnSpec`` (what to start) and ``scrubbed_env``;
- ``rosey.sandbox.spawner``: ``Spawner`` and ``PlainSpawner`` (how it is started);
- ``rosey.sandbox.forkspawner``: ``ForkSpawner`` (forked from the preloaded fork server,
  ``rosey.sandbox.forkserver``, the bot's default) and ``rosey.sandbox.orphans`` (the bot as
  child subreaper);
- ``rosey.sandbox.handle``: ``ProcessHandle`` (the started process, exec'd or forked);
- ``rosey.sandbox.plugin_process``: ``PluginProcess`` (the running process: control channel,
  stop, tree, samples), ``Confinement`` and the ``Confine`` hook;
- ``rosey.sandbox.exits``: seeing the exit the moment it happens;
- ``rosey.sandbox.stopping``: the terminate → grace → kill escalation.
"""

from __future__ import annotations

from rosey.sandbox.forkspawner import ForkSpawner
from rosey.sandbox.handle import ProcessHandle
from rosey.sandbox.limits import ResourceLimits
from rosey.sandbox.plugin_process import Confine, Confinement, PluginProcess
from rosey.sandbox.spawner import PlainSpawner, Spawner
from rosey.sandbox.spec import SpawnSpec, scrubbed_env

__all__ = [
    "Confine",
    "Confinement",
    "ForkSpawner",
    "PlainSpawner",
    "PluginProcess",
    "ProcessHandle",
    "ResourceLimits",
    "SpawnSpec",
    "Spawner",
    "scrubbed_env",
]
