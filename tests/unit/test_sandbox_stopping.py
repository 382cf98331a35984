"""rosey.sandbox.stopping: the terminate → grace → kill escalation, on futures (no processes)."""

from __future__ import annotations

import asyncio

from rosey.sandbox.stopping import Step, escalate


async def test_a_process_that_obeys_the_first_step_gets_no_second() -> None:
    exited: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    done: list[str] = []

    def polite() -> None:
        done.append("stop")
        exited.set_result(0)

    steps: list[Step] = [(polite, 5.0), (lambda: done.append("term"), 10.0)]
    assert await escalate(exited, steps) is True
    assert done == ["stop"]


async def test_each_step_runs_in_order_then_the_caller_kills() -> None:
    exited: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    done: list[str] = []

    async def request() -> None:
        done.append("stop")

    steps: list[Step] = [(request, 0.01), (lambda: done.append("term"), 0.02)]
    assert await escalate(exited, steps) is False
    assert done == ["stop", "term"]
    assert not exited.done()  # never cancelled by the escalation


async def test_a_late_step_still_runs_its_action() -> None:
    """A stop request that took the whole grace must not skip the SIGTERM."""
    exited: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    done: list[str] = []

    async def slow_request() -> None:
        await asyncio.sleep(0.05)
        done.append("stop")

    steps: list[Step] = [(slow_request, 0.0), (lambda: done.append("term"), 0.01)]
    assert await escalate(exited, steps) is False
    assert done == ["stop", "term"]


async def test_already_gone_runs_nothing() -> None:
    exited: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    exited.set_result(0)
    steps: list[Step] = [(lambda: (_ for _ in ()).throw(AssertionError("ran")), 1.0)]
    assert await escalate(exited, steps) is True
