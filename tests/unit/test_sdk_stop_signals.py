"""The plugin runner's stop signals (``rosey.sdk.runner._StopSignals``): SIGTERM and SIGINT set
the stop event in the loop, also when the kernel hands the signal to another thread, and are
ignored once the stop is done."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import Iterator

import pytest

from rosey.sdk.runner import _StopSignals


@pytest.fixture
def restored() -> Iterator[None]:
    """The test process's own handlers and wake-up descriptor, put back afterwards."""
    saved = {signum: signal.getsignal(signum) for signum in _StopSignals.SIGNALS}
    try:
        yield
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)
        signal.set_wakeup_fd(-1)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_a_stop_signal_sets_the_stop_event(restored: None, signum: int) -> None:
    stop = asyncio.Event()
    signals = _StopSignals(asyncio.get_running_loop(), stop)
    try:
        os.kill(os.getpid(), signum)
        await asyncio.wait_for(stop.wait(), 10)
    finally:
        signals.ignore()


def _blocked_in_select(tid: int) -> bool:
    """The thread ``tid`` of this process sits in ``epoll_wait``/``epoll_pwait`` (x86-64 and
    arm64 numbers): the loop is asleep, only a wake-up can get it going."""
    try:
        with open(f"/proc/self/task/{tid}/syscall") as fh:
            number = fh.read().split(" ", 1)[0]
    except OSError:
        return False
    return number in {"232", "281", "441", "22"}


async def test_a_signal_another_thread_receives_still_wakes_the_loop(restored: None) -> None:
    """A plugin's executor thread can be the one the kernel picks: the wake-up descriptor
    wakes the loop's select, which then runs the handler in the main thread.

    The signal goes to a worker thread once the loop sleeps in select; the worker then waits
    for the loop to say it saw the stop. Without the wake-up descriptor nothing wakes the loop
    and the worker's wait runs out (it wakes the loop itself then, so the test ends).
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    seen = threading.Event()
    outcome: list[bool] = []
    main = threading.get_native_id()
    signals = _StopSignals(loop, stop)

    def worker() -> None:
        for _ in range(10_000):  # up to ~10 s for the loop to fall asleep
            if _blocked_in_select(main):
                break
            seen.wait(0.001)
        signal.pthread_kill(threading.get_ident(), signal.SIGTERM)
        outcome.append(seen.wait(10))
        loop.call_soon_threadsafe(stop.set)  # ends the test either way

    thread = threading.Thread(target=worker)
    try:
        thread.start()
        await stop.wait()
        seen.set()
        thread.join(15)
        assert outcome == [True], "the loop slept through a signal another thread received"
    finally:
        signals.ignore()


async def test_after_the_stop_both_signals_are_ignored(restored: None) -> None:
    """A SIGTERM during the interpreter's teardown must not turn a clean exit into "signal 15"."""
    stop = asyncio.Event()
    signals = _StopSignals(asyncio.get_running_loop(), stop)
    signals.ignore()
    for signum in _StopSignals.SIGNALS:
        assert signal.getsignal(signum) == signal.SIG_IGN
        os.kill(os.getpid(), signum)  # ignored: this test process lives on
    assert signal.set_wakeup_fd(-1) == -1  # the wake-up descriptor was released
    await asyncio.sleep(0)
    assert not stop.is_set()
