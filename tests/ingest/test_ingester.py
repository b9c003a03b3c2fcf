"""The Ingester on a SQLite file and a real inbox: each complete file is taken once, each new id sent once."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from skinscreen.checksum import sha256_file
from skinscreen.config import Settings
from skinscreen.db import migrate, queries
from skinscreen.db.session import make_engine, make_session_factory, session_scope
from skinscreen.db.tables import Image, SeenFile
from skinscreen.ingest.dispatch import Dispatcher
from skinscreen.ingest.watcher import Ingester
from tests.conftest import copy_images, dataset_images

OUTSIDE = "symlink points outside the inbox; not read"


class Sent:
    """The sender: records each batch of ids it is handed (the boundary to Celery)."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self._lock = threading.Lock()

    def __call__(self, ids: list[int]) -> None:
        with self._lock:
            self.batches.append(list(ids))

    @property
    def ids(self) -> list[int]:
        with self._lock:
            return [i for batch in self.batches for i in batch]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    url = f"sqlite:///{tmp_path / 'skinscreen.db'}"
    migrate.upgrade(url)
    return Settings(settle_seconds=0.5, batch_size=4, batch_wait=0.5, database_url=url)


@pytest.fixture
def sessions(settings: Settings) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(settings.database_url)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def make_ingester(
    inbox: Path, settings: Settings, sessions: sessionmaker[Session]
) -> Callable[..., tuple[Ingester, Sent]]:
    def make(*, poll: bool = False) -> tuple[Ingester, Sent]:
        sent = Sent()
        dispatcher = Dispatcher(settings=settings, sessions=sessions, send=sent)
        return Ingester([inbox], settings=settings, sessions=sessions, dispatcher=dispatcher, poll=poll), sent

    return make


@pytest.fixture
def day(inbox: Path, data_dir: Path) -> Path:
    """inbox/siteA/2026-11-27/ with 10 dataset JPEGs."""
    folder = inbox / "siteA" / "2026-11-27"
    copy_images(dataset_images("benign", 10), folder)
    return folder


class Running:
    """An ingester running (observer and loop) in a thread until the test ends."""

    def __init__(self, ingester: Ingester) -> None:
        self.ingester = ingester
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.ingester.run()
        except BaseException as exc:  # handed to the test
            self.error = exc


@pytest.fixture
def run_in_thread() -> Iterator[Callable[[Ingester], Running]]:
    started: list[Running] = []

    def start(ingester: Ingester) -> Running:
        running = Running(ingester)
        running.thread.start()
        started.append(running)
        return running

    yield start
    for running in started:
        running.ingester.stop()
        running.thread.join(10)
        assert not running.thread.is_alive()
        assert running.error is None


def wait_until(condition: Callable[[], bool], *, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def images(sessions: sessionmaker[Session]) -> dict[str, int]:
    """sha256 -> image id of every registered image."""
    with session_scope(sessions) as session:
        return {sha: i for i, sha in session.execute(select(Image.id, Image.sha256))}


def write_slowly(source: Path, target: Path, *, chunks: int = 10, interval: float = 0.2) -> threading.Thread:
    """Copy `source` to `target` in chunks through one open handle, over chunks * interval seconds."""
    data = source.read_bytes()
    step = -(-len(data) // chunks)

    def write() -> None:
        with target.open("wb", buffering=0) as fh:
            for start in range(0, len(data), step):
                fh.write(data[start : start + step])
                time.sleep(interval)

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


def test_one_pass_takes_each_file_once_and_ignores_duplicates_and_partial_files(
    make_ingester: Callable[..., tuple[Ingester, Sent]], day: Path, sessions: sessionmaker[Session]
) -> None:
    shutil.copy(day / "1.jpg", day / "1-again.jpg")
    (day / "2.jpg.part").write_bytes(b"half a file")
    ingester, sent = make_ingester()

    ingester.run(once=True)

    registered = images(sessions)
    assert len(registered) == 10
    assert sorted(sent.ids) == sorted(registered.values())
    assert all(len(batch) <= 4 for batch in sent.batches)
    assert ingester.counts.files() == {"seen": 11, "new": 10, "duplicate": 1, "refused": 0}
    with session_scope(sessions) as session:
        paths = set(session.execute(select(SeenFile.path)).scalars())
        assert str(day / "1-again.jpg") in paths
        assert str(day / "2.jpg.part") not in paths
        assert queries.never_enqueued(session) == []


@pytest.mark.parametrize("poll", [False, True], ids=["inotify", "polling"])
def test_a_running_ingester_takes_files_as_they_arrive_each_once(
    make_ingester: Callable[..., tuple[Ingester, Sent]],
    run_in_thread: Callable[[Ingester], Running],
    inbox: Path,
    data_dir: Path,
    sessions: sessionmaker[Session],
    poll: bool,
) -> None:
    first, *sources = dataset_images("malignant", 6)
    ingester, sent = make_ingester(poll=poll)
    # Once a file dropped before the start is sent, the observer is watching and the first scan is done.
    copy_images([first], inbox / "siteA" / "warmup")
    run_in_thread(ingester)
    wait_until(lambda: len(sent.ids) == 1, what="the file dropped before the start")

    folder = inbox / "siteB" / "2026-11-27"
    copy_images(sources[:3], folder)
    slow = write_slowly(sources[3], folder / sources[3].name)
    shutil.copy(sources[4], folder / "x.jpg.part")
    os.rename(folder / "x.jpg.part", folder / "x.jpg")
    slow.join(10)

    expected = {sha256_file(p) for p in [first, *sources]}
    wait_until(lambda: set(images(sessions)) == expected and len(set(sent.ids)) == 6, what="6 images sent")
    time.sleep(1.0)  # a late event for a file already taken must not send it again

    assert set(images(sessions)) == expected  # the slow file was never taken half-written
    assert sorted(sent.ids) == sorted(images(sessions).values())
    assert ingester.counts.new == 6


def test_a_restarted_ingester_sends_nothing_again_but_takes_files_dropped_while_it_was_down(
    make_ingester: Callable[..., tuple[Ingester, Sent]], day: Path, sessions: sessionmaker[Session]
) -> None:
    before, sent_before = make_ingester()
    before.run(once=True)
    assert len(sent_before.ids) == 10

    after, sent_after = make_ingester()
    after.run(once=True)
    assert sent_after.batches == []
    assert after.counts.seen == 0

    shutil.copy(dataset_images("malignant", 1)[0], day / "dropped-while-down.jpg")
    again, sent_again = make_ingester()
    again.run(once=True)

    registered = images(sessions)
    assert len(registered) == 11
    assert sent_again.batches == [[registered[sha256_file(day / "dropped-while-down.jpg")]]]


def test_an_image_registered_but_never_sent_is_sent_at_the_next_start(
    make_ingester: Callable[..., tuple[Ingester, Sent]], day: Path, sessions: sessionmaker[Session]
) -> None:
    first, _ = make_ingester()
    first.run(once=True)
    with session_scope(sessions) as session:
        lost = session.execute(select(func.min(Image.id))).scalar_one()
        session.execute(
            update(Image).where(Image.id == lost).values(queued_at=None)
        )  # stopped before sending

    second, sent = make_ingester()
    second.run(once=True)

    assert sent.batches == [[lost]]


def test_a_symlink_out_of_the_inbox_is_refused_and_its_target_never_read(
    make_ingester: Callable[..., tuple[Ingester, Sent]],
    inbox: Path,
    tmp_path: Path,
    data_dir: Path,
    sessions: sessionmaker[Session],
) -> None:
    target = copy_images(dataset_images("malignant", 1), tmp_path / "outside")[0]
    (inbox / "siteA").mkdir()
    (inbox / "siteA" / "link.jpg").symlink_to(target)
    ingester, sent = make_ingester()

    ingester.run(once=True)

    assert sent.batches == []
    assert images(sessions) == {}
    assert ingester.counts.refused == 1
    with session_scope(sessions) as session:
        assert queries.status(session)["refused_files"] == {OUTSIDE: 1}


def test_a_symlink_within_the_inbox_is_taken_as_a_duplicate(
    make_ingester: Callable[..., tuple[Ingester, Sent]], day: Path, sessions: sessionmaker[Session]
) -> None:
    (day.parent / "alias.jpg").symlink_to(day / "1.jpg")
    ingester, sent = make_ingester()

    ingester.run(once=True)

    assert len(images(sessions)) == len(sent.ids) == 10
    assert ingester.counts.duplicate == 1


def test_the_sweep_sends_again_an_image_left_queued_too_long(
    make_ingester: Callable[..., tuple[Ingester, Sent]], day: Path, sessions: sessionmaker[Session]
) -> None:
    ingester, sent = make_ingester()
    ingester.run(once=True)
    stale = sent.ids[3]
    with session_scope(sessions) as session:
        old = datetime.now(UTC) - timedelta(hours=2)
        session.execute(update(Image).where(Image.id == stale).values(queued_at=old))
    sent.batches.clear()

    assert ingester.dispatcher.sweep() == 1  # older than sweep_after (15 min by default)

    assert sent.batches == [[stale]]
    with session_scope(sessions) as session:
        image = session.get_one(Image, stale)
        assert image.attempts == 2
        assert queries.stale_queued(session, older_than=timedelta(minutes=15)) == []
    assert ingester.dispatcher.sweep() == 0


def test_an_unreadable_file_is_refused_with_its_reason(
    make_ingester: Callable[..., tuple[Ingester, Sent]], day: Path, sessions: sessionmaker[Session]
) -> None:
    if os.geteuid() == 0:
        pytest.skip("running as root: chmod 000 does not stop root from reading the file")
    (day / "1.jpg").chmod(0)
    ingester, sent = make_ingester()
    try:
        ingester.run(once=True)
    finally:
        (day / "1.jpg").chmod(0o644)

    assert len(sent.ids) == 9
    with session_scope(sessions) as session:
        assert queries.status(session)["refused_files"] == {"permission denied": 1}
