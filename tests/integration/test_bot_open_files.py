"""The bot raises its own soft open-files limit: each plugin costs it several descriptors, and
the common soft default (1024) would cap it at about a hundred plugins."""

from __future__ import annotations

import resource
from collections.abc import Iterator
from pathlib import Path

import pytest

from botproc import run_bot


def soft_open_files(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError(f"no open-files line in /proc/{pid}/limits")


@pytest.fixture
def low_soft_limit() -> Iterator[int]:
    """The test's own soft limit at 1024 while the bot starts (it inherits it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    low = min(1024, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard))
    try:
        yield low
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def test_a_bot_started_with_1024_open_files_raises_its_soft_limit(
    tmp_path: Path, low_soft_limit: int
) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    async with run_bot(tmp_path) as bot:
        assert soft_open_files(bot.proc.pid) == min(65536, hard) > low_soft_limit
