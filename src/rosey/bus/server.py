"""The embedded nats-server: the broker ``rosey run`` starts when no NATS URL is given.

The server is a child process that must never outlive the bot and never block on its output.
Its process (own session, death signal, merged output pipe drained for its whole life, the
bounded SIGTERM → grace → SIGKILL stop) is a ``rosey.sandbox.managed.ManagedProcess``:
``sandbox/`` is the one package that spawns. Its config file is ``rosey.bus.server_config``.
What stays here is what the server's output and config *mean*:

- it runs from a generated config file under ``store_dir`` (mode 0600: it will hold the
  plugins' credentials);
- its output goes into ``nats-server.log`` and an in-memory tail, line by line to ``on_line``
  (the security monitor reads violations there);
- readiness is a handshake: the "Listening for client connections on HOST:PORT" and
  "Server is ready" log lines, awaited with a deadline;
- a reload (new ``authorization`` fragment) is validated with ``nats-server -t`` first, because
  a failed SIGHUP reload is only visible in the server's log, and confirmed from that log.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import re
import signal
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Self

from rosey.bus.server_config import (
    ServerConfig,
    ServerLimits,
    check_size,
    find_nats_server,
    size_bytes,
)
from rosey.errors import BrokerError, describe_exit
from rosey.files import write_atomically
from rosey.sandbox.managed import ManagedProcess, SpawnFailed, run_briefly

__all__ = ["EmbeddedServer", "ServerLimits", "find_nats_server", "validate_config"]

log = logging.getLogger("rosey.bus.server")

#: Log lines the server prints once it accepts clients (nats-server 2.x).
LISTENING_LINE = re.compile(r"Listening for client connections on (\S+):(\d+)\s*$")
READY_LINE = re.compile(r"Server is ready")
#: The outcome of a SIGHUP: group 1 holds the reason when the server refused the new config.
RELOAD_LINE = re.compile(
    r"Reloaded server configuration|Failed to reload server configuration: (.*)$"
)

_TAIL_LINES = 200
_LONGEST_LINE = 65536
_CHECK_TIMEOUT = 10.0  # seconds for `nats-server -t`; it takes a few milliseconds


async def validate_config(binary: Path, path: Path) -> None:
    """Check a config file with ``nats-server -t``; ``BrokerError`` with its output if invalid."""
    try:
        code, output = await run_briefly([str(binary), "-t", "-c", str(path)], _CHECK_TIMEOUT)
    except SpawnFailed as exc:
        raise BrokerError(f"could not run {binary}: {exc.strerror or exc}") from exc
    except TimeoutError as exc:
        raise BrokerError(f"checking {path} took longer than {_CHECK_TIMEOUT:g} s") from exc
    if code != 0:
        lines = output.decode(errors="replace").splitlines()
        raise BrokerError(f"configuration {path} is not valid ({describe_exit(code)})", lines)


def _write_private(path: Path, text: str) -> None:
    """Replace ``path`` with ``text``, readable by the owner only (it may hold credentials)."""
    write_atomically(path, text.encode(), private=True)


class EmbeddedServer:
    """A nats-server child process owned by the bot; ``async with`` starts and stops it."""

    def __init__(
        self,
        store_dir: Path,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        binary: Path | None = None,
        ready_timeout: float = 10.0,
        jetstream: bool = True,
        max_memory_store: str = "64MB",
        max_file_store: str = "1GB",
        authorization: str | None = None,
        on_line: Callable[[str], None] | None = None,
        limits: ServerLimits | None = None,
    ) -> None:
        self.store_dir = Path(store_dir)
        self.host = host
        #: None: the server picks a free port (a restart then keeps the one it picked).
        self.requested_port = port
        self.binary = binary
        self.ready_timeout = ready_timeout
        self.jetstream = jetstream
        self.max_memory_store = check_size("max_memory_store", max_memory_store)
        self.max_file_store = check_size("max_file_store", max_file_store)
        self.authorization = authorization
        self.limits = limits or ServerLimits()
        #: Called with every line the server logs (the security monitor reads violations).
        self.on_line = on_line
        self.config_path = self.store_dir / "nats-server.conf"
        self.log_path = self.store_dir / "nats-server.log"
        self._port: int | None = None
        self._running_binary: Path | None = None
        self._process: ManagedProcess | None = None
        self._log_fd: int | None = None
        self._pending = b""
        self._tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
        self._watches: list[tuple[re.Pattern[str], asyncio.Future[re.Match[str] | None]]] = []
        self._reload_lock = asyncio.Lock()

    # -- what callers read ------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The client port the server picked (known once ``start()`` returned)."""
        if self._port is None:
            raise RuntimeError("the embedded nats-server has not been started")
        return self._port

    @property
    def url(self) -> str:
        """``nats://HOST:PORT`` for clients; a wildcard listen address becomes loopback."""
        host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(self.host, self.host)
        if ":" in host:
            host = f"[{host}]"
        return f"nats://{host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The server's pid while its process runs, else ``None``."""
        process = self._process
        return process.pid if process is not None and process.running else None

    def log_tail(self, n: int = 20) -> list[str]:
        """The server's last ``n`` output lines (kept after it stopped)."""
        return list(self._tail)[-n:] if n > 0 else []

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the server and wait until it accepts clients; ``BrokerError`` otherwise.

        On any failure, including cancellation, the process is gone when this returns.
        """
        if self.pid is not None:
            raise RuntimeError(f"the embedded nats-server is already running (pid {self.pid})")
        binary = self.binary or find_nats_server()
        self.store_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        _write_private(self.config_path, self._render(self.authorization))
        self._port = None
        self._pending = b""
        self._log_fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        ready = self._watch(READY_LINE)
        log.info("nats-server starting (%s -c %s)", binary, self.config_path)
        try:
            self._process = process = await ManagedProcess.start(
                [str(binary), "-c", str(self.config_path)],
                env={**os.environ, **self.limits.environment()},
                sink=self,
                name="nats-server",
            )
        except BaseException as exc:
            self._unwatch(ready)
            self._close_log()
            if isinstance(exc, SpawnFailed):
                raise BrokerError(f"could not run {binary}: {exc.strerror or exc}") from exc
            raise
        self._running_binary = binary
        problem: str | None = None
        try:
            async with asyncio.timeout(self.ready_timeout):
                if await ready is None:  # the output ended: the process is exiting
                    code = await process.wait()
                    problem = f"exited before it was ready ({describe_exit(code)})"
                elif self._port is None:
                    problem = "said it was ready before it listened for clients"
        except TimeoutError:
            problem = f"not ready within {self.ready_timeout:g} s"
        except BaseException:
            await self.stop()
            raise
        finally:
            self._unwatch(ready)
        if problem is not None:
            await self.stop()
            raise BrokerError(f"{problem} (config {self.config_path})", self.log_tail())
        log.info("nats-server ready (pid %s) on %s", process.pid, self.url)

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop the server: SIGTERM, up to ``timeout`` s of grace, then SIGKILL.

        Idempotent. Cancelling the caller does not skip it: the grace period is cut short
        (SIGKILL) and the process is reaped before the cancellation propagates.
        """
        if self._process is None:
            return
        try:
            await self._process.stop(timeout)
        finally:
            self._close_log()

    async def reload(self, authorization: str, *, max_file_store: str | None = None) -> None:
        """Switch to a new ``authorization`` fragment (and JetStream file budget) without a
        restart.

        The new config is checked with ``nats-server -t`` before the SIGHUP, and the reload is
        confirmed from the server's log. On any refusal the old config file is put back, the
        server keeps serving with its old settings, and ``BrokerError`` says why.
        """
        process = self._process
        if process is None or not process.running:
            raise BrokerError("cannot reload: the server is not running", self.log_tail())
        async with self._reload_lock:
            previous_store = self.max_file_store
            if max_file_store is not None:
                # nats-server refuses a reload that lowers the JetStream store ("config reload
                # not supported for decreasing jetstream max memory and store"): a plugin
                # with storage that is removed or loses the grant keeps its share until the
                # next start.
                wanted = check_size("max_file_store", max_file_store)
                self.max_file_store = max(previous_store, wanted, key=size_bytes)
            candidate = self.config_path.with_name(self.config_path.name + ".new")
            _write_private(candidate, self._render(authorization))
            try:
                await validate_config(self._running_binary or find_nats_server(), candidate)
            except BaseException:
                candidate.unlink(missing_ok=True)
                self.max_file_store = previous_store
                raise
            candidate.replace(self.config_path)
            outcome = self._watch(RELOAD_LINE)
            try:
                process.send_signal(signal.SIGHUP)
                async with asyncio.timeout(self.ready_timeout):
                    match = await outcome
            except TimeoutError:
                match = None
            finally:
                self._unwatch(outcome)
            if match is not None and match.group(1) is None:
                self.authorization = authorization
                log.info("nats-server (pid %s) reloaded its configuration", process.pid)
                return
            self.max_file_store = previous_store
            _write_private(self.config_path, self._render(self.authorization))
            if match is not None:
                problem = f"refused the new configuration: {match.group(1)}"
            elif process.returncode is None:
                problem = f"did not confirm the reload within {self.ready_timeout:g} s"
            else:
                problem = f"exited during the reload ({describe_exit(process.returncode)})"
            raise BrokerError(problem, self.log_tail())

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- the server's output (``rosey.sandbox.managed.OutputSink``) ---------------------------

    def feed(self, chunk: bytes) -> None:
        """Copy a chunk of the server's output into the log file, the tail and the watches."""
        self._write_log(chunk)
        *lines, self._pending = (self._pending + chunk).split(b"\n")
        if len(self._pending) > _LONGEST_LINE:  # an endless line: take it as it is
            lines.append(self._pending)
            self._pending = b""
        for line in lines:
            self._on_line(line.decode(errors="replace").rstrip("\r"))

    def end(self) -> None:
        """The output ended (the server is exiting): whoever waits for a line gets ``None``."""
        try:
            if self._pending:
                pending, self._pending = self._pending, b""
                self._on_line(pending.decode(errors="replace"))
        finally:
            for _, future in self._watches:
                if not future.done():
                    future.set_result(None)
            self._watches.clear()

    # -- internals --------------------------------------------------------------------------

    def _render(self, authorization: str | None) -> str:
        config = ServerConfig(
            store_dir=self.store_dir,
            host=self.host,
            port=self.requested_port,
            jetstream=self.jetstream,
            max_memory_store=self.max_memory_store,
            max_file_store=self.max_file_store,
            limits=self.limits,
        )
        return config.render(authorization)

    def _watch(self, pattern: re.Pattern[str]) -> asyncio.Future[re.Match[str] | None]:
        """A future for the next output line matching ``pattern`` (``None``: output ended)."""
        future: asyncio.Future[re.Match[str] | None] = asyncio.get_running_loop().create_future()
        self._watches.append((pattern, future))
        return future

    def _unwatch(self, future: asyncio.Future[re.Match[str] | None]) -> None:
        self._watches = [(p, f) for p, f in self._watches if f is not future]

    def _write_log(self, chunk: bytes) -> None:
        if self._log_fd is None:
            return
        try:
            os.write(self._log_fd, chunk)
        except OSError as exc:  # keep draining the pipe even when the disk is full
            log.warning(
                "cannot write %s (%s); server output goes to the tail only", self.log_path, exc
            )
            self._close_log()

    def _on_line(self, line: str) -> None:
        self._tail.append(line)
        if self.on_line is not None:
            try:
                self.on_line(line)
            except Exception:  # a consumer's bug must never stop the log pump
                log.exception("nats-server log consumer failed on %r", line[:200])
        if self._port is None and (listening := LISTENING_LINE.search(line)):
            self._port = int(listening.group(2))
        if not self._watches:
            return
        waiting = []
        for pattern, future in self._watches:
            if future.done():
                continue
            if match := pattern.search(line):
                future.set_result(match)
            else:
                waiting.append((pattern, future))
        self._watches = waiting

    def _close_log(self) -> None:
        if self._log_fd is not None:
            fd, self._log_fd = self._log_fd, None
            os.close(fd)
