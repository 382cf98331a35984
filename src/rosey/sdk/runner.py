"""The plugin process: ``python -m rosey.sdk.runner --control-fd N --parent-pid P``.

The manager talks to it over an inherited socket, the control channel: one JSON object a line,
typed in ``rosey.protocol.control`` (``bootstrap``, ``confined``, ``ready``, ``failed``,
``stop``), this end in ``rosey.sdk.control``. Credentials come only this way: never in argv or
the environment, which other same-uid processes can read. End of file on the channel means the
manager is gone: the plugin exits.

Order matters for speed and safety: the heavy imports (nats) happen while the manager is still
placing this process into its cgroup and limits; plugin code is imported only after the
bootstrap arrives, i.e. after the limits are in force, and after the runner has put itself
under the layers the bootstrap asks for (``rosey.sdk.confinement``): its own PID and IPC
namespaces, the plugin's own uid, Landlock and dropped capabilities, and last the seccomp
filter, reported in one ``confined`` message before any plugin code runs. This module is the
serving half: connect (while the plugin is imported), ``on_start``, ``ready``, wait for the stop,
and end with the least work the plugin cannot tell from a full teardown (``_Ending``).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from types import FrameType
from typing import Any

from rosey.bus.client import EventBus
from rosey.errors import BusUnavailable
from rosey.protocol import control
from rosey.protocol.control import BootstrapMessage
from rosey.sdk.confinement import confine_self, harden
from rosey.sdk.control import ControlChannel
from rosey.sdk.plugin import Plugin
from rosey.sdk.runtime import PluginRuntime

__all__ = ["ControlChannel", "load_plugin_class", "main", "preload", "run", "run_forked", "serve"]

log = logging.getLogger("rosey.sdk.runner")


def load_plugin_class(plugin_dir: Path, entrypoint: str) -> type[Plugin]:
    """Import ``module:Class`` from the plugin folder; a clear error if it is not a Plugin."""
    module_name, _, class_name = entrypoint.partition(":")
    sys.path.insert(0, str(plugin_dir))
    module = importlib.import_module(module_name)
    cls = getattr(module, class_name, None)
    if cls is None:
        raise ImportError(f"module {module_name!r} has no class {class_name!r}")
    if not (isinstance(cls, type) and issubclass(cls, Plugin)):
        raise TypeError(f"{entrypoint} is not a subclass of rosey.sdk.Plugin")
    return cls


async def serve(channel: ControlChannel, boot: BootstrapMessage) -> int:
    """Run the plugin until a stop request, SIGTERM, or the manager's death."""
    await channel.open()
    ending = _Ending()
    try:
        return await _serve(channel, boot, ending)
    finally:
        channel.close()
        await ending.wind_down()


class _Ending:
    """What ``asyncio.run``'s teardown does that the plugin can see, done inside the loop.

    Tasks still running (the plugin's own) are cancelled and awaited, async generators closed,
    the default executor's threads joined: each costs nothing when there is nothing to do. The
    rest of that teardown (closing the loop, a run of the loop per step) ``os._exit`` makes
    moot, and so does closing the bus's connection (its tasks, the socket) when nothing of the
    plugin's would run after it: every plugin pays all that at the same moment when the bot
    stops them all. ``bus``: the connection a stop left open (``PluginRuntime.stop``).
    """

    def __init__(self) -> None:
        self.bus: EventBus | None = None
        #: The runner's own tasks, told to stop already (the control channel's watcher).
        self.spare: set[asyncio.Task[Any]] = set()

    def _others(self) -> list[asyncio.Task[Any]]:
        me = asyncio.current_task()
        spare = self.spare | (self.bus.tasks() if self.bus is not None else set())
        return [task for task in asyncio.all_tasks() if task is not me and task not in spare]

    async def wind_down(self) -> None:
        loop = asyncio.get_running_loop()
        others = self._others()
        if others:
            if self.bus is not None:  # the plugin's tasks end with the bus closed, as ever
                await self.bus.close()
                others = self._others()
            for task in others:
                task.cancel()
            outcomes = await asyncio.gather(*others, return_exceptions=True)
            for task, outcome in zip(others, outcomes, strict=True):
                if isinstance(outcome, Exception):  # reported as asyncio.run reports them
                    loop.call_exception_handler(
                        {
                            "message": "unhandled exception during asyncio.run() shutdown",
                            "exception": outcome,
                            "task": task,
                        }
                    )
        await loop.shutdown_asyncgens()
        await loop.shutdown_default_executor()
        # The loop returns once this step is done, without running what it scheduled (the
        # wake-ups of tasks told to stop: the watcher, the bus's): nothing will use them.
        loop.stop()


class _StopSignals:
    """SIGTERM and SIGINT set ``stop`` in the loop, as ``loop.add_signal_handler`` would.

    Not that method: adding and removing its handlers builds ``signal.valid_signals()`` (every
    signal number made an enum) each time, and the loop's close removes them again; ~0.3 ms of
    CPU per plugin, which every plugin pays at the same moment when the bot stops them all.
    Like it, a wake-up descriptor makes a signal that lands in another thread (a plugin's
    executor) wake the loop, which then runs the handler in this thread.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
        self._loop = loop
        self._stop = stop
        self._wake, self._woken = socket.socketpair()
        for sock in (self._wake, self._woken):
            sock.setblocking(False)
        loop.add_reader(self._woken.fileno(), self._drain)
        signal.set_wakeup_fd(self._wake.fileno(), warn_on_full_buffer=False)
        for signum in self.SIGNALS:
            signal.signal(signum, self._handler)

    def _handler(self, _signum: int, _frame: FrameType | None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: the stop is under way
            self._loop.call_soon_threadsafe(self._stop.set)

    def _drain(self) -> None:
        with contextlib.suppress(OSError):
            self._woken.recv(4096)

    def ignore(self) -> None:
        """Ignore both from now on, and let the wake-up descriptor go (the runner has no need:
        its loop stays open until ``os._exit``, so a late signal only sets ``stop`` again,
        and the interpreter never tears down to turn one into "signal 15")."""
        for signum in self.SIGNALS:
            signal.signal(signum, signal.SIG_IGN)
        signal.set_wakeup_fd(-1)
        self._loop.remove_reader(self._woken.fileno())
        self._wake.close()
        self._woken.close()


async def _serve(channel: ControlChannel, boot: BootstrapMessage, ending: _Ending) -> int:
    name: str = boot["name"]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # Installed before readiness is announced: a stop right after "ready" must be graceful.
    # Kept for the process's life (by the handlers it installs; ``ignore`` is for tests).
    _StopSignals(loop, stop)

    bus = EventBus(
        boot["nats_url"],
        name=f"plugin:{name}",
        user=boot.get("user"),
        password=boot.get("password"),
        inbox_prefix=boot.get("inbox_prefix"),
        connect_timeout=float(boot.get("connect_timeout", 5.0)),
    )
    # The runner's connection starts before the plugin is imported: its TCP handshake and the
    # server's INFO arrive while the import runs, instead of after it. (Confinement is in
    # force already; the plugin never sees the connection before ``runtime.start``.)
    connecting = asyncio.create_task(bus.connect(), name="bus connect")
    for _ in range(3):  # nats.connect yields a few times before its connect() is sent
        await asyncio.sleep(0)
    try:
        cls = load_plugin_class(Path(boot["plugin_dir"]), boot["entrypoint"])
        plugin = cls(name, dict(boot.get("config") or {}), Path(boot["data_dir"]))
    except Exception as exc:
        connecting.cancel()
        log.exception("%s: cannot load %s", name, boot["entrypoint"])
        await channel.send(control.failed(f"cannot load {boot['entrypoint']}: {exc}"))
        await asyncio.wait([connecting])
        await bus.close()
        return 1

    try:
        await connecting
    except BusUnavailable as exc:
        await channel.send(control.failed(str(exc)))
        return 1
    runtime = PluginRuntime(plugin, bus)
    try:
        await runtime.start()
    except Exception as exc:
        log.exception("%s: on_start failed", name)
        await channel.send(control.failed(f"on_start failed: {type(exc).__name__}: {exc}"))
        await bus.close()
        return 1
    await channel.send(control.ready(os.getpid()))

    replaced = False

    async def watch_control() -> None:
        nonlocal replaced
        while True:
            message = await channel.receive()
            if message is None:
                os._exit(70)  # the manager is gone; nobody is left to stop us politely
            if message["type"] == "stop":
                # A reload's new instance serves already: hand over (Plugin.replaced).
                replaced = message.get("replaced") is True
                stop.set()
                return

    watcher = asyncio.create_task(watch_control())
    ending.spare.add(watcher)
    try:
        await stop.wait()
    finally:
        watcher.cancel()
    # The process ends once serve returns: the connection may stay for its exit to close.
    await runtime.stop(float(boot.get("stop_timeout_s", 5.0)), replaced=replaced, close=False)
    ending.bus = bus
    # The handlers stay: the loop is never closed (``run``), so a signal from here to the
    # process's os._exit only queues another ``stop.set``.
    return 0


def main(argv: list[str] | None = None) -> None:
    """``python -m rosey.sdk.runner --control-fd N --parent-pid P``: the plain spawn."""
    args = list(sys.argv[1:] if argv is None else argv)
    fd = int(args[args.index("--control-fd") + 1])
    parent = int(args[args.index("--parent-pid") + 1])
    harden(parent)
    code = run(fd, parent)
    # The stop is complete (on_stop ran, the bus is drained): skip the interpreter's teardown
    # (destroying every module and object, a last GC pass), milliseconds of CPU that every
    # plugin would pay at the same moment when the bot stops them all; as a forked plugin does.
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def run(fd: int, parent: int, *, forked: bool = False) -> int:
    """The runner's life after its arguments: bootstrap, confinement, serving; the exit code.

    ``forked``: started by the fork server (``rosey.sandbox.forkserver``), which made this
    process non-dumpable already; its death signal is armed only now, once the bootstrap has
    come: the manager sends it after the fork server's intermediate process is gone, so the
    manager is our parent by then (arming it earlier would tie us to the intermediate).
    """
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    channel = ControlChannel(fd)
    boot = channel.read_bootstrap()
    if forked:
        harden(parent)
    confine_self(channel, fd, boot, parent)
    # Not asyncio.run: both callers end the process with os._exit once this returns, and
    # ``serve`` winds down what of the plugin would outlive the loop (``_Ending``).
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    code = loop.run_until_complete(serve(channel, boot))
    sys.stdout.flush()
    return code


def run_forked(fd: int, parent: int) -> int:
    """The fork server's entry: ``run`` in a process forked from it."""
    return run(fd, parent, forked=True)


def preload() -> None:
    """What the fork server imports besides this module: the confinement steps the runner
    would otherwise import after its bootstrap (standard library and ctypes only); and the
    seccomp filters, compiled once here instead of in every plugin (no secret in them), and
    the C library those steps call, loaded and looked up once here too."""
    from rosey.sandbox import landlock, namespaces, seccomp

    seccomp.prepare()
    landlock.prepare()
    namespaces.prepare()


if __name__ == "__main__":
    main()
