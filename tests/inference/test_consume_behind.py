"""segment's writer thread: order, bounded look-ahead and error propagation of ``consume_behind``."""

from __future__ import annotations

import threading
import time

import pytest

from dakd_edge.inference.segment import consume_behind


def test_consumes_everything_in_order_on_another_thread() -> None:
    seen: list[int] = []
    threads: set[str] = set()

    def consume(i: int) -> None:
        seen.append(i)
        threads.add(threading.current_thread().name)

    consume_behind(range(50), consume)
    assert seen == list(range(50))
    assert threads == {"dakd-edge-writer"}


def test_producer_runs_at_most_one_item_ahead() -> None:
    consumed = 0
    lead: list[int] = []

    def produce():
        for i in range(20):
            lead.append(i - consumed)
            yield i

    def consume(_: int) -> None:
        nonlocal consumed
        time.sleep(0.005)  # a slow writer: an unbounded queue would let the producer run away
        consumed += 1

    consume_behind(produce(), consume)
    assert consumed == 20
    assert max(lead) <= 1  # the previous item may still be being consumed while this one is made


def test_consumer_error_stops_the_producer_and_is_raised() -> None:
    made = 0

    def produce():
        nonlocal made
        for i in range(1000):
            made += 1
            yield i

    def consume(i: int) -> None:
        if i == 3:
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        consume_behind(produce(), consume)
    assert made < 10


def test_producer_error_is_raised_after_the_writer_finishes() -> None:
    seen: list[int] = []

    def produce():
        yield 1
        yield 2
        raise ValueError("bad tile")

    with pytest.raises(ValueError, match="bad tile"):
        consume_behind(produce(), seen.append)
    assert seen == [1, 2]
