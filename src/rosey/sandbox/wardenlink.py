"""The bot's side of the warden (``rosey.sandbox.warden``): start it, tell it, dismiss it.

The pipe to the warden is the whole protocol: the bot writes one line per thing the warden must
clean up if the bot dies, and the kernel closes the pipe when the bot dies, however it dies.
Its write end is close-on-exec, so no plugin or server inherits it and holds it open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from pathlib import Path

log = logging.getLogger("rosey.sandbox")

START_TIMEOUT = 10.0


class WardenLink:
    """A running warden and the pipe to it."""

    def __init__(self, proc: asyncio.subprocess.Process, fd: int) -> None:
        self._proc = proc
        self._fd = fd
        self._broken = False

    @property
    def pid(self) -> int:
        return self._proc.pid

    @classmethod
    async def start(
        cls, python: str = sys.executable, timeout: float = START_TIMEOUT
    ) -> WardenLink:
        """Start the warden and wait until it is armed; ``OSError`` if it does not come up."""
        read_end, write_end = os.pipe()  # both close-on-exec; Popen dups read_end to fd 0
        try:
            # From the event-loop thread: the warden's death signal fires when it exits.
            proc = await asyncio.create_subprocess_exec(
                python,
                "-I",
                "-m",
                "rosey.sandbox.warden",
                str(os.getpid()),
                stdin=read_end,
                stdout=asyncio.subprocess.PIPE,
                start_new_session=True,  # out of reach of Ctrl-C in the bot's terminal
            )
        except BaseException:
            os.close(write_end)
            raise
        finally:
            os.close(read_end)
        assert proc.stdout is not None
        try:
            async with asyncio.timeout(timeout):
                line = await proc.stdout.readline()
        except BaseException:
            os.close(write_end)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise
        if line != b"ready\n":
            os.close(write_end)
            code = await proc.wait()
            raise OSError(f"the warden did not start (exit {code}, said {line[:80]!r})")
        log.info("warden ready (pid %d)", proc.pid)
        return cls(proc, write_end)

    def _send(self, line: str) -> None:
        if self._fd < 0 or self._broken:
            return
        try:
            os.write(self._fd, line.encode() + b"\n")
        except OSError as exc:
            self._broken = True
            log.error(
                "warden (pid %d) is gone (%s): plugin processes may outlive a crash of the bot",
                self.pid,
                exc,
            )

    def watch_cgroup(self, path: Path) -> None:
        self._send(f"cgroup {path}")

    def watch_group(self, pgid: int) -> None:
        self._send(f"group {pgid}")

    def forget_group(self, pgid: int) -> None:
        self._send(f"ungroup {pgid}")

    def watch_pid(self, pid: int) -> None:
        self._send(f"pid {pid}")

    def forget_pid(self, pid: int) -> None:
        self._send(f"unpid {pid}")

    def watch_mount(self, path: Path) -> None:
        """A data folder's quota mount (sandbox/quota.py): unmounted if the bot dies."""
        self._send(f"mount {path}")

    def forget_mount(self, path: Path) -> None:
        self._send(f"unmount {path}")

    async def close(self, timeout: float = 5.0) -> None:
        """Dismiss the warden (the bot cleaned up itself) and wait for it to exit."""
        self._send("bye")
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        try:
            async with asyncio.timeout(timeout):
                await self._proc.wait()
        except TimeoutError:
            log.warning("warden (pid %d) did not exit; killing it", self.pid)
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()
            await self._proc.wait()
