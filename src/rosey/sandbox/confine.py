"""The sandbox: puts each plugin process under the best limits the host offers.

``Sandbox.confine`` is the ``Confine`` hook of ``PlainSpawner``. For each new plugin process,
before its bootstrap (and so before any plugin code) it:

1. creates the process's cgroup leaf in every usable hierarchy, writes the manifest limits
   (memory, cpu, pids) and moves the process in (``cgroup-v2`` or ``cgroup-v1``); a process
   that was the fork server's standby (``rosey.sandbox.standby``) is in a leaf of its own
   already (``place``): that leaf is renamed to the plugin's and the limits written, no move;
2. lowers its rlimits from the outside with ``prlimit`` (``rlimit``): open files, file size,
   no core dumps, and memory when no cgroup holds it; each on its own, so a value the kernel
   refuses costs that limit only (reported as ``missing:rlimit-<name>``, e.g. ``nofile``);
3. tells the warden its process group, so a SIGKILLed bot leaves no orphan.

Before the spawn (``prepare``, the ``PlainSpawner`` hook) its data folder gets its quota:
a loop-mounted filesystem of ``limits.data_mb`` where the host allows, else a watch
(``rosey.sandbox.quota``); the layer (``quota-loop`` / ``quota-watch``) joins the others.

Which layers are in force is reported per process (``PluginProcess.layers``). When a layer is
unavailable the next one down is used, and psutil sampling (``rosey.sandbox.stats``) remains.

``open_sandbox(state_dir)`` is what the bot uses: it starts the warden, detects the host,
prepares (and cleans up after a crashed predecessor) the bot's cgroup group, starts the fork
server (``Sandbox.spawner()`` forks plugins from it, ``rosey.sandbox.forkspawner``; the warden
is told its pid), and tears it all down on exit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import resource
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path

from rosey.sandbox import namespaces
from rosey.sandbox.cgroups import CgroupGroup, PluginCgroup, family_name
from rosey.sandbox.forkspawner import ForkSpawner
from rosey.sandbox.host import CgroupHost, detect_host
from rosey.sandbox.leaf_remover import LeafRemover
from rosey.sandbox.limits import LimitEvents, rlimit_values
from rosey.sandbox.process import Confinement, PlainSpawner, PluginProcess, SpawnSpec
from rosey.sandbox.quota import WATCH, DataQuota, QuotaWatch
from rosey.sandbox.stats import CgroupCounters
from rosey.sandbox.wardenlink import WardenLink

log = logging.getLogger("rosey.sandbox")


#: Status names of the rlimits a plugin gets (``missing:rlimit-<name>`` when refused).
RLIMIT_NAMES = {
    resource.RLIMIT_NOFILE: "nofile",
    resource.RLIMIT_FSIZE: "fsize",
    resource.RLIMIT_CORE: "core",
    resource.RLIMIT_DATA: "data",
}


def apply_rlimits(
    pid: int,
    values: Mapping[int, tuple[int, int]],
    prlimit: Callable[[int, int, tuple[int, int]], object] = resource.prlimit,
) -> dict[int, Exception]:
    """Set each of ``values`` on ``pid`` on its own; the ones refused, with the reason."""
    refused: dict[int, Exception] = {}
    for which, value in values.items():
        try:
            prlimit(pid, which, value)
        except (OSError, ValueError) as exc:
            refused[which] = exc
    return refused


class SandboxConfinement(Confinement):
    """One process's cgroup leaf, rlimits and warden registration."""

    def __init__(
        self,
        layers: list[str],
        *,
        pgid: int,
        cgroup: PluginCgroup | None,
        warden: WardenLink | None,
        memory_by_rlimit: bool,
        quota: DataQuota | None = None,
        data_watch: QuotaWatch | None = None,
        prime: Callable[[], object] | None = None,
        remover: LeafRemover | None = None,
    ) -> None:
        super().__init__(layers)
        self.memory_by_rlimit = memory_by_rlimit
        self.cgroup = cgroup
        # A restart's move into its new leaf (``restart_ahead``); this leaf's removal (``release``).
        self._prime = prime
        self._remover = remover
        self._pgid = pgid
        self._warden = warden
        # Data-folder quota hook (sandbox/quota.py): the watch that measures its folder, if any.
        self._quota = quota
        self._data_watch = data_watch

    @property
    def has_cgroup(self) -> bool:
        return self.cgroup is not None

    def members(self) -> set[int] | None:
        return self.cgroup.members() if self.cgroup is not None else None

    def counters(self) -> CgroupCounters | None:
        return self.cgroup.counters() if self.cgroup is not None else None

    def kill(self) -> None:
        if self.cgroup is not None:
            self.cgroup.kill()

    def restart_ahead(self) -> None:
        """Its tree is killed: take the cgroup attach lock for the restart's move now
        (``AttachPrimer``), beside the rest of the restart instead of after the fork."""
        if self.cgroup is not None and self._prime is not None:
            self._prime()

    def events(self) -> LimitEvents:
        events = self.cgroup.events() if self.cgroup is not None else LimitEvents()
        if self._data_watch is not None and self._data_watch.over_mb:
            events = dataclasses.replace(events, data_used_mb=self._data_watch.over_mb)
        return events

    def release(self) -> None:
        if self._quota is not None and self._data_watch is not None:
            self._quota.forget(self._data_watch)  # keeps over_mb for events()
        if self.cgroup is not None:
            if self._remover is not None:
                self._remover.remove(self.cgroup)  # its rmdir may wait for the kernel's lock
            else:
                self.cgroup.remove()
        if self._warden is not None:
            self._warden.forget_group(self._pgid)
            self._warden = None


class Sandbox:
    """Confines the plugin processes of one bot."""

    def __init__(
        self,
        host: CgroupHost | None,
        *,
        family: str,
        warden: WardenLink | None = None,
        rlimits: bool = True,
        quota: DataQuota | None = None,
        fork_server: bool = True,
        namespaces: dict[str, bool] | None = None,
    ) -> None:
        """``family`` names the bot's cgroups (see ``rosey.sandbox.cgroups``); ``host=None``
        (or an empty host) means no cgroups: rlimits only. ``quota``: the data-folder quotas
        (None: a plain folder, as before). ``fork_server``: plugins of the bot's environment
        are forked from a preloaded fork server (``rosey.sandbox.forkspawner``); ``namespaces``:
        those its standby is made in (``{"pid": bool, "ipc": bool}``, the configuration's)."""
        self.host = host or CgroupHost()
        self.warden = warden
        self.rlimits = rlimits
        self.quota = quota
        self.fork_server = fork_server
        self.namespaces = namespaces
        self._spawner: PlainSpawner | None = None
        self._group = CgroupGroup(self.host, family) if self.host.usable else None
        self._remover = LeafRemover()
        #: Standby pid → its leaf (None: no cgroups here), from ``place`` until confined.
        self._standbys: dict[int, PluginCgroup | None] = {}

    @property
    def layers(self) -> list[str]:
        """The layers a plugin process gets (after ``open``)."""
        layers = self._group.layers if self._group is not None else []
        layers = [*layers, "rlimit"] if self.rlimits else layers
        return [*layers, self.quota.layer] if self.quota is not None else layers

    @property
    def cgroup_dirs(self) -> list[Path]:
        return list(self._group.dirs.values()) if self._group is not None else []

    def open(self) -> None:
        """Prepare the group folders (emptying stale ones); register them with the warden."""
        if self._group is not None:
            self._group.open()
            for folder in self._group.dirs.values():
                if self.warden is not None:
                    self.warden.watch_cgroup(folder)
        for note in self.host.notes:
            log.info("sandbox: %s", note)
        if (userns := namespaces.host_note()) is not None:
            log.warning("sandbox: %s", userns)
        log.info("sandbox: plugin limits enforced by %s", ", ".join(self.layers) or "nothing")

    def confine(self, process: PluginProcess) -> Confinement:
        """The ``Confine`` hook: limits on ``process`` before it runs plugin code."""
        pid, limits = process.pid, process.spec.limits
        standby = pid in self._standbys
        placed = self._standbys.pop(pid, None)
        if self.warden is not None:
            self.warden.watch_group(pid)  # first: from now on a crash of the bot is covered
            if standby:
                self.warden.forget_pid(pid)
        cgroup: PluginCgroup | None = None
        if self._group is not None and placed is not None:
            cgroup = self._group.rename(placed, f"{process.name}-{pid}", limits)
        elif self._group is not None and self._group.dirs:
            cgroup = self._group.leaf(f"{process.name}-{pid}", limits)
            try:
                cgroup.add(pid)
            except OSError as exc:  # gone already (ESRCH), or the kernel refused the move
                log.warning("%s (pid %d): cannot enter its cgroup: %s", process.name, pid, exc)
                cgroup.remove()
                cgroup = None
        layers = cgroup.layers if cgroup is not None else []
        memory_by_cgroup = cgroup is not None and "memory" in cgroup.enforcing
        memory_by_rlimit = False
        if self.rlimits:
            # One by one: a value the kernel refuses costs that limit only, and says so.
            wanted = rlimit_values(limits, memory_by_cgroup=memory_by_cgroup)
            refused = apply_rlimits(pid, wanted)
            names = {which: RLIMIT_NAMES.get(which, str(which)) for which in wanted}
            for which, error in refused.items():
                log.warning(
                    "%s (pid %d): cannot set its RLIMIT_%s to %s: %s",
                    process.name,
                    pid,
                    names[which].upper(),
                    wanted[which][0],
                    error,
                )
            if len(refused) < len(wanted):
                layers.append("rlimit")
            layers += [f"missing:rlimit-{names[which]}" for which in refused]
            memory_by_rlimit = (
                resource.RLIMIT_DATA in wanted and resource.RLIMIT_DATA not in refused
            )
        data_watch: QuotaWatch | None = None
        if self.quota is not None:  # the layer its data folder got from ``prepare``
            layers.append(self.quota.layer_of(process.name))
            if layers[-1] == WATCH:
                spec = process.spec
                data_watch = self.quota.watch(process.name, pid, spec.data_dir, limits.data_mb)
        log.info("%s (pid %d): confined by %s", process.name, pid, ", ".join(layers) or "nothing")
        return SandboxConfinement(
            layers,
            pgid=pid,
            cgroup=cgroup,
            warden=self.warden,
            memory_by_rlimit=memory_by_rlimit,
            quota=self.quota,
            data_watch=data_watch,
            prime=self._prime,
            remover=self._remover,
        )

    def _prime(self, *, always: bool = False) -> None:
        """Prime the attach lock for a move soon (``AttachPrimer``), unless a standby will
        take the start (``always``: it will not): then there is no move, and the primer would
        hold the kernel's cgroup mutex that the standby's rename needs."""
        if self._group is not None and (always or not self._standbys):
            self._group.primer.prime()

    def place(self, pid: int) -> None:
        """A standby's cgroup leaf (``Placement``, blocking: a worker thread): created and
        the process moved in now, while nothing waits for it; the warden told its pid."""
        if self.warden is not None:
            self.warden.watch_pid(pid)
        leaf: PluginCgroup | None = None
        if self._group is not None and self._group.dirs:
            leaf = self._group.leaf(f"standby-{pid}", None)
            try:
                leaf.add(pid)
            except OSError:
                leaf.remove()
                raise
        self._standbys[pid] = leaf

    def unplace(self, pid: int) -> None:
        """A standby gone or discarded: its leaf removed (a worker thread), the warden told."""
        if pid not in self._standbys:
            return
        leaf = self._standbys.pop(pid)
        if leaf is not None:
            self._remover.remove(leaf)
        if self.warden is not None:
            self.warden.forget_pid(pid)

    def leaves_removed(self, timeout: float | None = None) -> bool:
        """Wait until the leaves of every process gone so far are removed; False on timeout."""
        return self._remover.idle(timeout)

    def prepare(self, spec: SpawnSpec) -> None:
        """The ``prepare`` hook of ``PlainSpawner`` (before the exec): the data folder, under
        its quota. Blocking; ``DataQuotaExceeded`` when the folder is over its quota already."""
        # Its move into its cgroup, soon; not if a standby takes it (only forked ones do).
        self._prime(always=spec.python is not None)
        if self.quota is None:
            spec.data_dir.mkdir(parents=True, exist_ok=True)
        else:
            self.quota.prepare(spec.name, spec.data_dir, spec.limits.data_mb)

    def spawner(self) -> PlainSpawner:
        """The spawner whose processes this sandbox confines (one per sandbox: it owns the
        fork server, started by ``start_fork_server`` or by its first spawn)."""
        if self._spawner is None:
            if self.fork_server:
                self._spawner = ForkSpawner(
                    confine=self.confine,
                    prepare=self.prepare,
                    on_server=self.watch_pid,
                    placement=self,
                    namespaces=self.namespaces,
                )
            else:
                self._spawner = PlainSpawner(confine=self.confine, prepare=self.prepare)
        return self._spawner

    async def start_fork_server(self) -> None:
        """Start the fork server now (a failure is logged: plugins are then spawned plainly)."""
        spawner = self.spawner()
        if isinstance(spawner, ForkSpawner):
            await spawner.start()

    def watch_pid(self, pid: int | None) -> None:
        """Another child of the bot that must not outlive it (the embedded nats-server)."""
        if self.warden is not None and pid is not None:
            self.warden.watch_pid(pid)

    def close(self) -> None:
        """Stop the fork server; kill whatever is left in the group and remove its cgroups;
        unmount data folders."""
        if isinstance(self._spawner, ForkSpawner):
            self._spawner.close()
        self._remover.close()
        if self._group is not None:
            self._group.close()
        if self.quota is not None:
            self.quota.release_all()


@contextlib.asynccontextmanager
async def open_sandbox(
    state_dir: Path,
    *,
    host: CgroupHost | None = None,
    warden: bool = True,
    data_quota: bool = True,
    fork_server: bool = True,
    namespaces: dict[str, bool] | None = None,
) -> AsyncIterator[Sandbox]:
    """The bot's sandbox: warden started, host detected, cgroup group ready, data-folder quotas
    (``data_quota``: the loop-mounted kind where possible), the fork server started
    (``fork_server``, its standby made in ``namespaces``); all torn down after.

    A warden that cannot start is logged and done without: plugins still die with the bot
    (their death signal), but what they forked may not.
    """
    link: WardenLink | None = None
    if warden:
        try:
            link = await WardenLink.start()
        except OSError as exc:
            log.error(
                "sandbox: the warden did not start (%s): children of plugins may "
                "outlive a crash of the bot",
                exc,
            )
    try:
        quota = DataQuota(state_dir, enabled=data_quota, warden=link)
        quota.open()  # unmounts what a crashed predecessor left mounted
        sandbox = Sandbox(
            host if host is not None else detect_host(),
            family=family_name(state_dir),
            warden=link,
            quota=quota,
            fork_server=fork_server,
            namespaces=namespaces,
        )
        sandbox.open()
        try:
            await sandbox.start_fork_server()
            yield sandbox
        finally:
            sandbox.close()
    finally:
        if link is not None:
            await link.close()
