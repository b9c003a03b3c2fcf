"""The batcher: full batches at once, a partial one after its wait or a flush, in order, each id once."""

from __future__ import annotations

import random
import time

from skinscreen.ingest.enqueue import Batcher


class Recorder:
    """A sender that keeps every batch it is handed."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def __call__(self, ids: list[int]) -> None:
        self.batches.append(ids)


def test_full_batches_are_sent_at_once() -> None:
    sent = Recorder()
    batcher = Batcher(size=3, wait=60.0, send=sent)

    batcher.add([1, 2, 3, 4, 5, 6, 7])

    assert sent.batches == [[1, 2, 3], [4, 5, 6]]
    assert len(batcher) == 1


def test_a_partial_batch_waits_for_more_ids() -> None:
    sent = Recorder()
    batcher = Batcher(size=3, wait=60.0, send=sent)

    batcher.add([1, 2])
    batcher.tick()

    assert sent.batches == []
    assert len(batcher) == 2


def test_a_partial_batch_is_sent_once_it_has_waited() -> None:
    sent = Recorder()
    batcher = Batcher(size=3, wait=0.2, send=sent)
    batcher.add([1])
    batcher.add([2])
    started = time.monotonic()

    deadline = started + 5.0
    while not sent.batches and time.monotonic() < deadline:
        batcher.tick()
        time.sleep(0.02)

    assert sent.batches == [[1, 2]]
    assert time.monotonic() - started >= 0.2 - 0.05  # not before its wait (the first add came earlier)
    batcher.tick()
    assert sent.batches == [[1, 2]]


def test_flush_sends_what_is_left_and_nothing_when_empty() -> None:
    sent = Recorder()
    batcher = Batcher(size=4, wait=60.0, send=sent)

    batcher.flush()
    batcher.add([9, 8])
    batcher.flush()
    batcher.flush()

    assert sent.batches == [[9, 8]]
    assert len(batcher) == 0


def test_ids_come_out_in_order_none_lost_none_twice() -> None:
    sent = Recorder()
    batcher = Batcher(size=7, wait=60.0, send=sent)
    ids = list(range(1000))
    rng = random.Random(0)
    start = 0
    while start < len(ids):
        step = rng.randint(0, 20)
        batcher.add(ids[start : start + step])
        start += step
        if rng.random() < 0.1:
            batcher.flush()
    batcher.flush()

    assert [i for batch in sent.batches for i in batch] == ids
    assert all(1 <= len(batch) <= 7 for batch in sent.batches)
