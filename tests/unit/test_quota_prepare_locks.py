"""``DataQuota.prepare`` of different plugins runs at once; ``release_all`` waits for one under
way (it would otherwise mount after the unmounting and leave a mount behind).

100 cold plugins each create and mount an image (``mkfs``, ``mount``: ~50-150 ms of waiting
on processes); one lock for all of them queued every start-all behind them.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from rosey.sandbox.quota import WATCH, DataQuota


def test_plugins_prepare_at_once_and_release_all_waits_for_one_under_way(tmp_path: Path) -> None:
    quota = DataQuota(tmp_path / "state", enabled=False)
    quota.open()
    assert quota.layer == WATCH
    busy = threading.Lock()
    busy.acquire()
    quota._plugin_locks["slow"] = busy  # "slow" is in the middle of a prepare of its own
    done: list[str] = []

    def prepare_slow() -> None:
        done.append(quota.prepare("slow", tmp_path / "state" / "data" / "slow", 16))

    slow = threading.Thread(target=prepare_slow)
    slow.start()
    deadline = time.monotonic() + 5
    while quota._preparing != 1:  # it has begun (and waits for its plugin's lock)
        assert time.monotonic() < deadline, "the prepare did not begin"
        time.sleep(0.001)
    # Another plugin does not wait for it.
    assert quota.prepare("fast", tmp_path / "state" / "data" / "fast", 16) == WATCH
    released = threading.Event()

    def close() -> None:
        quota.release_all()
        released.set()

    closer = threading.Thread(target=close)
    closer.start()
    assert not released.wait(0.2)  # waits for the prepare under way
    busy.release()
    slow.join(5)
    assert released.wait(5)
    closer.join(5)
    assert done == [WATCH]
    assert (tmp_path / "state" / "data" / "slow").is_dir()
