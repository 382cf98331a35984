"""Outgoing lines from the bus to the server's echo: queued, in flight, resent, counted."""

from __future__ import annotations

from rosey.connectors.cytube.outbox import CONFIRM_TIMEOUT, Counters, Outbox
from rosey.connectors.cytube.pacer import DEFAULT, Pacer


def outbox(**options: int) -> Outbox:
    return Outbox(Pacer(DEFAULT), Counters(), channel="Chan", **options)


def send(text: str, to: str | None = None, channel: str = "chan") -> dict[str, object]:
    return {"channel": channel, "text": text, "in_reply_to": "m1", "to": to}


def test_lines_go_in_order_and_are_answered_by_kind() -> None:
    box = outbox()
    assert box.enqueue(send("one\ntwo"))
    assert box.enqueue(send("psst", to="alice"))
    taken = [box.take(0.0) for _ in range(3)]
    assert [line.event for line in taken] == [
        ("chatMsg", {"msg": "one", "meta": {}}),
        ("chatMsg", {"msg": "two", "meta": {}}),
        ("pm", {"to": "alice", "msg": "psst", "meta": {}}),
    ]
    assert taken[0].in_reply_to == "m1"
    assert box.answered(pm=True) is taken[2]  # the PM echo, whatever chat is in flight
    assert box.answered(pm=False) is taken[0]
    assert box.answered(pm=True) is None
    assert (box.in_flight, box.queued, box.counters.sent) == (1, 0, 3)


def test_a_refused_line_goes_again_first_then_is_given_up() -> None:
    box = outbox(max_resends=1)
    box.enqueue(send("a\nb"))
    first = box.take(0.0)
    assert box.refused(0.0, 100) is None
    assert box.delay(0.05) > 0  # the server's wait
    assert box.take(1.0) is first  # again, before "b"
    assert box.refused(1.0, 100) is first  # refused twice: given up
    assert box.take(2.0).text == "b"
    assert (box.counters.resent, box.counters.given_up) == (1, 1)


def test_escalated_refusals_wait_longer_each_time() -> None:
    box = outbox()
    box.enqueue(send("muted?"))
    box.take(0.0)
    box.refused(0.0, None, escalate=True)
    first_wait = box.delay(0.0)
    box.take(first_wait)
    box.refused(first_wait, None, escalate=True)
    assert box.delay(first_wait) > 1.9 > first_wait > 0.9


def test_lines_in_flight_go_again_after_a_reconnect_in_order() -> None:
    box = outbox()
    box.enqueue(send("1\n2\n3"))
    box.take(0.0)
    box.take(0.0)
    box.requeue_in_flight()
    assert [box.take(1.0).text for _ in range(3)] == ["1", "2", "3"]
    assert box.counters.resent == 2


def test_unsent_line_goes_first() -> None:
    box = outbox()
    box.enqueue(send("x\ny"))
    line = box.take(0.0)
    box.unsent(line)
    assert (box.in_flight, box.counters.sent) == (0, 0)
    assert box.take(0.0) is line


def test_unanswered_lines_are_forgotten_and_counted() -> None:
    box = outbox()
    box.enqueue(send("lost\nnext"))
    box.take(0.0)
    box.take(CONFIRM_TIMEOUT + 1)
    assert box.counters.unconfirmed == 1
    assert box.in_flight == 1


def test_bounded_queue_and_other_channels_are_counted() -> None:
    box = outbox(queue_size=3)
    assert box.enqueue(send("a\nb"))
    assert not box.enqueue(send("c\nd"))  # whole or not at all
    assert box.counters.dropped == 2
    assert not box.enqueue(send("x", channel="other"))
    assert box.counters.dropped == 3
    assert not box.enqueue({"channel": "chan", "text": 5})
    assert not box.enqueue({"channel": "chan", "text": "x", "to": 5})
    assert box.enqueue({"text": "no channel: this one"})
    assert box.queued == 3
