"""The settle tracker: a file comes out of `ready()` once, and only after its writer has finished."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from skinscreen.ingest import settle
from skinscreen.ingest.settle import Ready, SettleTracker


class SlowWriter(threading.Thread):
    """Appends a chunk every `interval` seconds through one open handle, then closes it."""

    def __init__(self, path: Path, *, chunks: int, interval: float) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.chunks = chunks
        self.interval = interval
        self.opened = threading.Event()
        self.finished_at: float | None = None

    def run(self) -> None:
        with self.path.open("wb", buffering=0) as fh:
            self.opened.set()
            for _ in range(self.chunks):
                fh.write(b"x" * 1000)
                time.sleep(self.interval)
        self.finished_at = time.monotonic()


@pytest.fixture
def slow_writer(tmp_path: Path) -> Iterator[SlowWriter]:
    writer = SlowWriter(tmp_path / "slow.jpg", chunks=7, interval=0.3)  # about 2 s
    writer.start()
    writer.opened.wait(5)
    yield writer
    writer.join(10)


def wait_ready(tracker: SettleTracker, *, timeout: float) -> list[Ready]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready = tracker.ready()
        if ready:
            return ready
        time.sleep(0.05)
    return []


def test_a_file_being_written_slowly_is_ready_once_and_only_after_its_writer_is_done(
    slow_writer: SlowWriter,
) -> None:
    tracker = SettleTracker(settle_seconds=1.0)
    tracker.touch(slow_writer.path)

    taken: list[tuple[float, Ready]] = []
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline and not (slow_writer.finished_at and len(tracker) == 0):
        taken += [(time.monotonic(), r) for r in tracker.ready()]
        time.sleep(0.05)
    taken += [(time.monotonic(), r) for r in tracker.ready()]

    assert len(taken) == 1
    at, ready = taken[0]
    assert slow_writer.finished_at is not None and at > slow_writer.finished_at
    assert (ready.path, ready.size) == (slow_writer.path, 7 * 1000)


def test_a_close_after_writing_shortens_the_wait(tmp_path: Path) -> None:
    path = tmp_path / "copied.jpg"
    path.write_bytes(b"complete")
    tracker = SettleTracker(settle_seconds=30.0)
    tracker.touch(path)
    tracker.touch(path, closed=True)
    started = time.monotonic()

    assert tracker.ready() == []
    ready = wait_ready(tracker, timeout=5.0)

    assert [r.path for r in ready] == [path]
    assert settle.CLOSED_WAIT <= time.monotonic() - started < 5.0
    assert len(tracker) == 0


def test_without_a_close_the_full_settle_time_is_waited(tmp_path: Path) -> None:
    path = tmp_path / "copied.jpg"
    path.write_bytes(b"complete")
    tracker = SettleTracker(settle_seconds=30.0)
    tracker.touch(path)

    assert wait_ready(tracker, timeout=settle.CLOSED_WAIT + 0.3) == []
    assert len(tracker) == 1


def test_a_file_deleted_while_tracked_is_forgotten(tmp_path: Path) -> None:
    path = tmp_path / "gone.jpg"
    path.write_bytes(b"soon gone")
    tracker = SettleTracker(settle_seconds=0.0)
    tracker.touch(path)
    path.unlink()

    assert tracker.ready() == []
    assert len(tracker) == 0
    tracker.touch(path)  # a late event for the deleted path
    assert len(tracker) == 0


def test_a_scan_once_takes_files_unchanged_for_the_settle_time_without_waiting(tmp_path: Path) -> None:
    old, fresh = tmp_path / "old.jpg", tmp_path / "fresh.jpg"
    old.write_bytes(b"x")
    fresh.write_bytes(b"y")
    os.utime(old, ns=(time.time_ns() - 60 * 10**9,) * 2)
    tracker = SettleTracker(settle_seconds=30.0)
    tracker.touch(old, by_mtime=True)
    tracker.touch(fresh, by_mtime=True)  # written just now: it waits as any file would

    assert [r.path for r in tracker.ready()] == [old]
    assert len(tracker) == 1
