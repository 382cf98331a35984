"""``rosey.aio``: the owned task set and the first-of wait every package shares (issue 11)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from rosey.aio import TaskSet, first_of


async def test_drain_lets_quick_tasks_finish_and_cancels_the_rest() -> None:
    tasks = TaskSet()
    finished: list[str] = []
    release = asyncio.Event()

    async def quick() -> None:
        await asyncio.sleep(0)
        finished.append("quick")

    async def stuck() -> None:
        await release.wait()
        finished.append("stuck")

    tasks.spawn(quick())
    hung = tasks.spawn(stuck())
    assert len(tasks) == 2
    cancelled = await tasks.drain(0.05, grace=1.0)
    assert cancelled == 1
    assert finished == ["quick"]
    assert hung.cancelled()
    assert len(tasks) == 0


async def test_drain_of_nothing_is_quick() -> None:
    assert await TaskSet().drain(10.0) == 0


async def test_cancel_all_ends_every_task() -> None:
    tasks = TaskSet()
    forever = [tasks.spawn(asyncio.Event().wait()) for _ in range(3)]
    await tasks.cancel_all(1.0)
    assert all(t.cancelled() for t in forever)
    assert len(tasks) == 0


async def test_a_failing_task_is_logged_with_its_name(caplog: pytest.LogCaptureFixture) -> None:
    tasks = TaskSet(logging.getLogger("test.aio"), "task %s failed")

    async def boom() -> None:
        raise RuntimeError("boom")

    done: list[str] = []
    task = tasks.spawn(boom(), name="life:dice", on_done=lambda t: done.append(t.get_name()))
    with caplog.at_level(logging.ERROR, logger="test.aio"):
        await asyncio.wait([task])
        await asyncio.sleep(0)  # done callbacks run on the next loop iteration
    assert done == ["life:dice"]
    assert [r.getMessage() for r in caplog.records] == ["task life:dice failed"]


async def test_first_of_returns_the_first_and_cancels_the_others() -> None:
    gate = asyncio.Event()
    never = asyncio.Event()

    async def value() -> str:
        await gate.wait()
        return "ready"

    waiting = asyncio.ensure_future(first_of(never.wait(), value()))
    await asyncio.sleep(0)
    gate.set()
    index, result = await waiting
    assert (index, result) == (1, "ready")


async def test_first_of_prefers_the_lowest_index_when_several_are_done() -> None:
    stop, ready = asyncio.Event(), asyncio.Event()
    stop.set()
    ready.set()
    assert (await first_of(stop.wait(), ready.wait()))[0] == 0


async def test_first_of_times_out_with_minus_one() -> None:
    assert await first_of(asyncio.Event().wait(), timeout=0.01) == (-1, None)


async def test_first_of_raises_the_winners_exception() -> None:
    async def fail() -> None:
        raise ValueError("no")

    with pytest.raises(ValueError, match="no"):
        await first_of(fail(), asyncio.Event().wait())


async def test_cancelling_first_of_cancels_what_it_waits_for() -> None:
    started = asyncio.Event()
    ended: list[str] = []

    async def waits() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            ended.append("cleaned up")

    task = asyncio.ensure_future(first_of(waits()))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert ended == ["cleaned up"]
