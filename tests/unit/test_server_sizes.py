"""nats-server sizes in bytes: the JetStream budget is compared before a reload."""

from __future__ import annotations

import pytest

from rosey.bus.server_config import size_bytes


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("0", 0),
        ("1048576", 1048576),
        ("8M", 8 << 20),
        ("64MB", 64 << 20),
        ("72mb", 72 << 20),
        ("1GB", 1 << 30),
        ("1GiB", 1 << 30),
        ("2T", 2 << 40),
        ("512K", 512 << 10),
    ],
)
def test_sizes(text: str, size: int) -> None:
    assert size_bytes(text) == size


@pytest.mark.parametrize("text", ["", "MB", "1.5GB", "-1", "1PB"])
def test_not_sizes(text: str) -> None:
    with pytest.raises(ValueError, match="not a size"):
        size_bytes(text)
