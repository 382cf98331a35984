"""The plugin process: ``python -m rosey.sdk.runner --control-fd N --parent-pid P``.

The manager talks to it over an inherited socket (the control channel), one JSON object a line:

    manager → plugin   {"type": "bootstrap", ...}   name, entrypoint, folders, bus URL, credentials
    plugin → manager   {"type": "ready"}            subscribed and ``on_start`` returned
    plugin → manager   {"type": "failed", "error"}  could not start (the reason, in words)
    manager → plugin   {"type": "stop"}             polite stop request (SIGTERM does the same)

Credentials come only this way: never in argv or the environment, which other same-uid
processes can read. End of file on the channel means the manager is gone: the plugin exits.

Order matters for speed and safety: the heavy imports (nats) happen while the manager is still
placing this process into its cgroup and limits; plugin code is imported only after the
bootstrap arrives, i.e. after the limits are in force.
"""

from __future__ import annotations

import asyncio
import ctypes
import importlib
import json
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

from rosey.bus.client import EventBus
from rosey.errors import BusUnavailable
from rosey.sdk.plugin import Plugin
from rosey.sdk.runtime import PluginRuntime

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4

log = logging.getLogger("rosey.sdk.runner")


def _harden(parent_pid: int) -> None:
    """Die with the manager, and keep other same-uid processes out of our memory."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    except (OSError, AttributeError) as exc:  # not Linux: the warden still covers us
        print(f"rosey runner: prctl unavailable: {exc}", file=sys.stderr)
    # The manager may have died before PDEATHSIG was armed.
    if os.getppid() != parent_pid:
        os._exit(70)


class ControlChannel:
    """The line-oriented JSON channel to the manager."""

    def __init__(self, fd: int) -> None:
        self._sock = socket.socket(fileno=fd)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    def send_now(self, message: dict[str, Any]) -> None:
        """Blocking send, before the event loop starts."""
        self._sock.sendall(json.dumps(message).encode() + b"\n")

    def read_bootstrap(self) -> dict[str, Any]:
        """Blocking read of the first line, before the event loop starts."""
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = self._sock.recv(65536)
            if not chunk:
                raise SystemExit(70)  # manager went away before bootstrapping us
            buf += chunk
        message: dict[str, Any] = json.loads(buf)
        return message

    async def open(self) -> None:
        self._sock.setblocking(False)
        self._reader, self._writer = await asyncio.open_connection(sock=self._sock)

    async def send(self, message: dict[str, Any]) -> None:
        if self._writer is None:
            return
        try:
            self._writer.write(json.dumps(message).encode() + b"\n")
            await self._writer.drain()
        except (ConnectionError, OSError):
            pass  # manager gone: EOF handling ends us

    async def receive(self) -> dict[str, Any] | None:
        """The next message, or None at end of file (the manager is gone)."""
        assert self._reader is not None
        try:
            line = await self._reader.readline()
        except (ConnectionError, OSError):
            return None
        if not line:
            return None
        try:
            message: dict[str, Any] = json.loads(line)
        except json.JSONDecodeError:
            return {"type": "invalid"}
        return message

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        else:
            self._sock.close()


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


async def serve(control: ControlChannel, boot: dict[str, Any]) -> int:
    """Run the plugin until a stop request, SIGTERM, or the manager's death."""
    await control.open()
    try:
        return await _serve(control, boot)
    finally:
        control.close()


async def _serve(control: ControlChannel, boot: dict[str, Any]) -> int:
    name: str = boot["name"]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # Installed before readiness is announced: a stop right after "ready" must be graceful.
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    try:
        cls = load_plugin_class(Path(boot["plugin_dir"]), boot["entrypoint"])
        plugin = cls(name, dict(boot.get("config") or {}), Path(boot["data_dir"]))
    except Exception as exc:
        log.exception("%s: cannot load %s", name, boot["entrypoint"])
        await control.send({"type": "failed", "error": f"cannot load {boot['entrypoint']}: {exc}"})
        return 1

    bus = EventBus(
        boot["nats_url"],
        name=f"plugin:{name}",
        user=boot.get("user"),
        password=boot.get("password"),
        inbox_prefix=boot.get("inbox_prefix"),
        connect_timeout=float(boot.get("connect_timeout", 5.0)),
    )
    try:
        await bus.connect()
    except BusUnavailable as exc:
        await control.send({"type": "failed", "error": str(exc)})
        return 1
    runtime = PluginRuntime(plugin, bus)
    try:
        await runtime.start()
    except Exception as exc:
        log.exception("%s: on_start failed", name)
        await control.send(
            {"type": "failed", "error": f"on_start failed: {type(exc).__name__}: {exc}"}
        )
        await bus.close()
        return 1
    await control.send({"type": "ready", "pid": os.getpid()})

    async def watch_control() -> None:
        while True:
            message = await control.receive()
            if message is None:
                os._exit(70)  # the manager is gone; nobody is left to stop us politely
            if message.get("type") == "stop":
                stop.set()
                return

    watcher = asyncio.create_task(watch_control())
    try:
        await stop.wait()
    finally:
        watcher.cancel()
    await runtime.stop(float(boot.get("stop_timeout_s", 5.0)))
    # The stop is done; a SIGTERM the manager sends while the interpreter tears down (many
    # plugins stopping at once on a busy host) must not turn a clean exit into "signal 15".
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.remove_signal_handler(signum)
        signal.signal(signum, signal.SIG_IGN)
    return 0


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    fd = int(args[args.index("--control-fd") + 1])
    parent = int(args[args.index("--parent-pid") + 1])
    _harden(parent)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    control = ControlChannel(fd)
    boot = control.read_bootstrap()
    sandbox = boot.get("sandbox")
    if sandbox is not None:
        # Before any plugin code: from here on the kernel holds this process to the rules.
        from rosey.sandbox.landlock import Rules, confine

        try:
            layers = confine(
                Rules(
                    read=tuple(sandbox["read"]),
                    write=tuple(sandbox["write"]),
                    connect_ports=None
                    if sandbox.get("network")
                    else tuple(sandbox["connect_ports"]),
                )
            )
        except OSError as exc:
            control.send_now({"type": "failed", "error": f"cannot confine the plugin: {exc}"})
            sys.exit(1)
        control.send_now({"type": "confined", "layers": layers})
    code = asyncio.run(serve(control, boot))
    sys.stdout.flush()
    sys.exit(code)


if __name__ == "__main__":
    main()
