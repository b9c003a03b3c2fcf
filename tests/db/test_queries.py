"""The queries, run on a SQLite file and on PostgreSQL, each migrated with Alembic first."""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from skinscreen.db import migrate, queries
from skinscreen.db.cases import CaseFilter, iter_cases
from skinscreen.db.session import make_engine, make_session_factory, session_scope
from skinscreen.db.tables import Batch, Image, Prediction, SeenFile, State
from skinscreen.results import DicomInfo
from tests.conftest import result

MODEL = "tiny-v1"
FOLDER = "/inbox/siteA/2026-11-27"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty database: a SQLite file, or a fresh PostgreSQL schema."""
    url = (
        f"sqlite:///{tmp_path / 'skinscreen.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    migrate.upgrade(url)
    yield url


@pytest.fixture
def sessions(db_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(db_url)
    yield make_session_factory(engine)
    engine.dispose()


def digest(content: str) -> str:
    return hashlib.sha256(content.encode()).hexdigest()


def register(
    session: Session, name: str, *, content: str | None = None, folder: str = FOLDER, mtime_ns: int = 1
) -> tuple[int, bool]:
    """Register `folder/name` whose bytes are `content` (default: the name)."""
    return queries.register_file(
        session,
        path=f"{folder}/{name}",
        size=100,
        mtime_ns=mtime_ns,
        sha256=digest(content or name),
        site=folder.split("/")[2],
        folder=folder,
    )


def count(session: Session, table: type) -> int:
    return session.execute(select(func.count()).select_from(table)).scalar_one()


def test_the_same_bytes_at_two_paths_are_one_image(sessions: sessionmaker[Session]) -> None:
    with session_scope(sessions) as session:
        first = register(session, "a.jpg", content="lesion")
        second = register(session, "copy-of-a.jpg", content="lesion")

    assert first[1] is True
    assert second == (first[0], False)
    with session_scope(sessions) as session:
        assert count(session, Image) == 1
        assert count(session, SeenFile) == 2
        assert session.get_one(Image, first[0]).path == f"{FOLDER}/a.jpg"  # the first path is kept


def test_taken_paths_are_remembered_by_path_size_and_mtime(sessions: sessionmaker[Session]) -> None:
    with session_scope(sessions) as session:
        register(session, "a.jpg", mtime_ns=5)
        register(session, "a.jpg", mtime_ns=5)  # the same file again: harmless

    with session_scope(sessions) as session:
        assert queries.seen_keys(session) == {(f"{FOLDER}/a.jpg", 100, 5)}
        assert queries.is_seen(session, path=f"{FOLDER}/a.jpg", size=100, mtime_ns=5)
        assert not queries.is_seen(session, path=f"{FOLDER}/a.jpg", size=100, mtime_ns=6)
        assert count(session, SeenFile) == 1


def test_a_refused_file_is_seen_and_counted_but_registers_no_image(sessions: sessionmaker[Session]) -> None:
    with session_scope(sessions) as session:
        for _ in range(2):
            queries.record_refused_file(
                session, path="/inbox/x.jpg", size=3, mtime_ns=7, reason="permission denied"
            )

    with session_scope(sessions) as session:
        assert queries.is_seen(session, path="/inbox/x.jpg", size=3, mtime_ns=7)
        assert count(session, Image) == 0
        assert queries.status(session)["refused_files"] == {"permission denied": 1}


def test_a_chunk_registers_in_a_fixed_number_of_statements_with_duplicates_in_order(
    sessions: sessionmaker[Session],
) -> None:
    def chunk(names: list[str], contents: list[str]) -> list[queries.NewFile]:
        return [
            queries.NewFile(f"{FOLDER}/{n}", 100, 1, digest(c), "siteA", FOLDER)
            for n, c in zip(names, contents, strict=True)
        ]

    with session_scope(sessions) as session:
        known, _ = register(session, "known.jpg", content="old")
    statements: list[str] = []
    engine = sessions.kw["bind"]
    listen = event.listens_for(engine, "before_cursor_execute")(lambda *a: statements.append(a[2]))
    try:
        with session_scope(sessions) as session:
            small = queries.register_files(session, chunk(["s1.jpg"], ["s1"]))
        few = len(statements)
        with session_scope(sessions) as session:
            names = [f"{i}.jpg" for i in range(40)] + ["again.jpg", "copy.jpg"]
            got = queries.register_files(session, chunk(names, [f"c{i}" for i in range(40)] + ["c3", "old"]))
    finally:
        event.remove(engine, "before_cursor_execute", listen)

    assert small[0][1] is True
    assert len(statements) - few <= few + 1  # 42 files cost what 1 did (+1: the look-up of known bytes)
    assert [new for _, new in got] == [True] * 40 + [False, False]
    assert got[40][0] == got[3][0] and got[41][0] == known
    assert [i for i, _ in got[:40]] == sorted(i for i, _ in got[:40])  # ids follow the files' order
    with session_scope(sessions) as session:
        assert count(session, Image) == 42
        assert count(session, SeenFile) == 44
        assert queries.seen_among(session, [(f"{FOLDER}/copy.jpg", 100, 1), (f"{FOLDER}/x.jpg", 100, 1)]) == {
            (f"{FOLDER}/copy.jpg", 100, 1)
        }


def test_files_of_one_folder_share_one_batch(sessions: sessionmaker[Session]) -> None:
    with session_scope(sessions) as session:
        a, _ = register(session, "a.jpg")
        b, _ = register(session, "b.jpg")
        c, _ = register(session, "c.jpg", folder="/inbox/siteB/2026-11-28")

    with session_scope(sessions) as session:
        batches = {row.folder: row for row in session.execute(select(Batch)).scalars()}
        assert set(batches) == {FOLDER, "/inbox/siteB/2026-11-28"}
        assert batches[FOLDER].site == "siteA"
        assert session.get_one(Image, a).batch_id == session.get_one(Image, b).batch_id == batches[FOLDER].id
        assert session.get_one(Image, c).batch_id == batches["/inbox/siteB/2026-11-28"].id


def test_images_to_score_skips_what_this_model_version_already_scored(
    sessions: sessionmaker[Session],
) -> None:
    with session_scope(sessions) as session:
        done, waiting, broken = (register(session, n)[0] for n in ("done.jpg", "waiting.jpg", "broken.jpg"))
        queries.save_scores(session, {done: result(0.7)}, model_version=MODEL)
        queries.save_scores(session, {broken: result(reason="cannot decode")}, model_version=MODEL)
        # Back in the queue (a new model version is rolled out) but already scored by MODEL.
        session.execute(update(Image).where(Image.id == done).values(state=State.queued))

    with session_scope(sessions) as session:
        ids = [done, waiting, broken]
        assert queries.images_to_score(session, ids, model_version=MODEL) == [
            (waiting, f"{FOLDER}/waiting.jpg")
        ]
        assert [i for i, _ in queries.images_to_score(session, ids, model_version="tiny-v2")] == [
            done,
            waiting,
        ]
        assert queries.images_to_score(session, [broken], model_version="tiny-v2") == []


def test_an_image_scored_twice_keeps_its_first_probability_and_one_prediction(
    sessions: sessionmaker[Session],
) -> None:
    with session_scope(sessions) as session:
        image_id, _ = register(session, "a.jpg")
    for probability in (0.9, 0.1):  # a redelivered message scores the same image again
        with session_scope(sessions) as session:
            queries.save_scores(session, {image_id: result(probability)}, model_version=MODEL)

    with session_scope(sessions) as session:
        predictions = session.execute(select(Prediction)).scalars().all()
        assert [(p.image_id, p.probability, p.flagged, p.threshold) for p in predictions] == [
            (image_id, 0.9, True, 0.5)
        ]
        assert session.get_one(Image, image_id).state is State.scored


def test_a_failure_stores_its_reason_and_no_prediction(sessions: sessionmaker[Session]) -> None:
    with session_scope(sessions) as session:
        bad, _ = register(session, "bad.jpg")
        vague, _ = register(session, "vague.jpg")
        queries.save_scores(
            session,
            {bad: result(reason="not an image: cannot identify image file"), vague: result()},
            model_version=MODEL,
        )

    with session_scope(sessions) as session:
        assert (session.get_one(Image, bad).state, session.get_one(Image, bad).reason) == (
            State.failed,
            "not an image: cannot identify image file",
        )
        assert session.get_one(Image, vague).reason == "unknown failure"
        assert count(session, Prediction) == 0


def test_a_shadow_rescore_adds_predictions_and_leaves_the_image_rows_as_they_were(
    sessions: sessionmaker[Session],
) -> None:
    """Re-scoring with another version goes through the same write as scoring, predictions only."""
    with session_scope(sessions) as session:
        scored, failed = register(session, "scored.jpg")[0], register(session, "failed.jpg")[0]
        queries.save_scores(
            session,
            {scored: result(0.2, format="jpeg"), failed: result(reason="file not found")},
            model_version=MODEL,
        )
    with session_scope(sessions) as session:
        queries.save_scores(
            session,
            {scored: result(reason="file not found", format="png"), failed: result(0.9)},
            model_version="tiny-v2",
            shadow=True,
        )
        queries.save_scores(session, {scored: result(0.8)}, model_version="tiny-v3", shadow=True)

    with session_scope(sessions) as session:
        rows = session.execute(select(Prediction.image_id, Prediction.model_version, Prediction.flagged))
        assert sorted(rows) == sorted(
            [(scored, MODEL, False), (failed, "tiny-v2", True), (scored, "tiny-v3", True)]
        )
        kept = [
            (i.state, i.reason, i.format)
            for i in (session.get_one(Image, scored), session.get_one(Image, failed))
        ]
        assert kept == [(State.scored, None, "jpeg"), (State.failed, "file not found", None)]


def test_scoring_stores_the_format_and_the_dicom_identifiers(sessions: sessionmaker[Session]) -> None:
    dicom = DicomInfo(study_uid="1.2.3", sop_uid="1.2.3.4", body_site="back", acquisition_date="20240115")
    with session_scope(sessions) as session:
        image_id, _ = register(session, "scan.dcm")
        queries.save_scores(
            session, {image_id: result(0.2, format="dicom", dicom=dicom)}, model_version=MODEL
        )

    with session_scope(sessions) as session:
        image = session.get_one(Image, image_id)
        assert (image.format, image.study_uid, image.sop_uid, image.body_site) == (
            "dicom",
            "1.2.3",
            "1.2.3.4",
            "back",
        )
        assert image.acquisition_date == "20240115"


def test_every_field_read_from_a_dicom_header_has_its_image_column() -> None:
    """Nothing `images.py` keeps from a DICOM file is dropped on the way to the table."""
    assert {f.name for f in dataclasses.fields(DicomInfo)} <= set(Image.__table__.columns.keys())


def test_stale_queued_respects_the_age(sessions: sessionmaker[Session]) -> None:
    with session_scope(sessions) as session:
        fresh, old, scored = (register(session, n)[0] for n in ("fresh.jpg", "old.jpg", "scored.jpg"))
        queries.mark_enqueued(session, [fresh, old, scored])
        queries.save_scores(session, {scored: result(0.3)}, model_version=MODEL)
        two_hours_ago = datetime.now(UTC) - timedelta(hours=2)
        session.execute(update(Image).where(Image.id == old).values(queued_at=two_hours_ago))

    with session_scope(sessions) as session:
        assert queries.stale_queued(session, older_than=timedelta(0)) == [fresh, old]
        assert queries.stale_queued(session, older_than=timedelta(hours=1)) == [old]
        assert queries.stale_queued(session, older_than=timedelta(days=1)) == []


def test_a_never_enqueued_image_is_stale_by_its_registration_time(sessions: sessionmaker[Session]) -> None:
    with session_scope(sessions) as session:
        image_id, _ = register(session, "a.jpg")

    with session_scope(sessions) as session:
        assert queries.stale_queued(session, older_than=timedelta(0)) == [image_id]
        assert queries.stale_queued(session, older_than=timedelta(minutes=15)) == []


def test_never_enqueued_lists_images_registered_but_not_sent(sessions: sessionmaker[Session]) -> None:
    with session_scope(sessions) as session:
        sent, unsent = register(session, "sent.jpg")[0], register(session, "unsent.jpg")[0]
        queries.mark_enqueued(session, [sent])

    with session_scope(sessions) as session:
        assert queries.never_enqueued(session) == [unsent]
        assert session.get_one(Image, sent).attempts == 1


def test_requeue_puts_failures_back_in_the_queue_by_reason(sessions: sessionmaker[Session]) -> None:
    with session_scope(sessions) as session:
        a, b, ok = (register(session, n)[0] for n in ("a.jpg", "b.jpg", "ok.jpg"))
        queries.mark_enqueued(session, [a, b, ok])
        queries.save_scores(
            session,
            {a: result(reason="model crashed"), b: result(reason="not an image"), ok: result(0.4)},
            model_version=MODEL,
        )

    with session_scope(sessions) as session:
        assert queries.requeue(session, state=State.failed, reason="model crashed") == [a]
    with session_scope(sessions) as session:
        image = session.get_one(Image, a)
        assert (image.state, image.reason, image.queued_at) == (State.queued, None, None)
        assert queries.never_enqueued(session) == [a]
        assert queries.requeue(session, state=State.failed) == [b]
    with session_scope(sessions) as session:
        assert session.get_one(Image, ok).state is State.scored


@pytest.fixture
def cases(sessions: sessionmaker[Session]) -> dict[str, int]:
    """Scored: low 0.2, high 0.9 and mid 0.6 (both flagged); broken failed; waiting queued since 2020."""
    with session_scope(sessions) as session:
        ids = {n: register(session, f"{n}.jpg")[0] for n in ("waiting", "low", "broken", "high", "mid")}
        queries.save_scores(
            session,
            {
                ids["low"]: result(0.2),
                ids["high"]: result(0.9),
                ids["mid"]: result(0.6),
                ids["broken"]: result(reason="not an image"),
            },
            model_version=MODEL,
        )
        old = datetime(2020, 1, 1, tzinfo=UTC)
        session.execute(update(Image).where(Image.id == ids["waiting"]).values(created_at=old))
    return ids


def names(rows: list[dict[str, object]]) -> list[str]:
    return [Path(str(r["path"])).stem for r in rows]


def listed(session: Session, **filters: Any) -> list[dict[str, Any]]:
    return list(iter_cases(session, CaseFilter(**filters)))


def test_cases_come_highest_probability_first_with_unscored_last(
    sessions: sessionmaker[Session], cases: dict[str, int]
) -> None:
    with session_scope(sessions) as session:
        rows = listed(session)

    assert names(rows) == ["high", "mid", "low", "broken", "waiting"]  # unscored ones newest first
    high = rows[0]
    assert (high["state"], high["probability"], high["flagged"], high["model_version"]) == (
        "scored",
        0.9,
        True,
        MODEL,
    )
    assert (rows[-2]["state"], rows[-2]["reason"], rows[-2]["probability"]) == (
        "failed",
        "not an image",
        None,
    )


def test_cases_filter_by_flag_state_and_registration_date(
    sessions: sessionmaker[Session], cases: dict[str, int]
) -> None:
    with session_scope(sessions) as session:
        assert names(listed(session, flagged=True)) == ["high", "mid"]
        assert names(listed(session, flagged=False)) == ["low"]
        assert names(listed(session, state=State.failed)) == ["broken"]
        assert names(listed(session, state=State.queued)) == ["waiting"]
        assert names(listed(session, since=datetime(2025, 1, 1, tzinfo=UTC))) == [
            "high",
            "mid",
            "low",
            "broken",
        ]
        assert listed(session, since=datetime.now(UTC) + timedelta(days=1)) == []


def test_status_counts_states_flags_failures_and_refusals(
    sessions: sessionmaker[Session], cases: dict[str, int]
) -> None:
    with session_scope(sessions) as session:
        queries.record_refused_file(session, path="/inbox/l.jpg", size=1, mtime_ns=1, reason="symlink")
        report = queries.status(session)

    assert report["images"] == 5
    assert report["by_state"] == {"queued": 1, "scored": 3, "failed": 1, "superseded": 0}
    assert report["flagged"] == 2
    assert report["failures_by_reason"] == {"not an image": 1}
    assert report["refused_files"] == {"symlink": 1}
    assert report["scored_last_window"] == 3


def test_status_throughput_counts_busy_time_only_and_each_image_once(sessions: sessionmaker[Session]) -> None:
    """Batches of 3 and 2 images 2 s apart, five idle minutes, batches of 4 and 2 images 2 s apart, and a
    shadow re-score of the last batch: 11 images, 4 busy seconds, 4 images scored in them."""
    start = datetime.now(UTC) - timedelta(seconds=400)
    plan = [(0, 3), (2, 2), (302, 4), (304, 2)]
    with session_scope(sessions) as session:
        batches = []
        for n, (at, size) in enumerate(plan):
            ids = [register(session, f"b{n}-{i}.jpg")[0] for i in range(size)]
            queries.save_scores(session, {i: result(0.3) for i in ids}, model_version=MODEL)
            stamp = start + timedelta(seconds=at)
            session.execute(update(Prediction).where(Prediction.image_id.in_(ids)).values(created_at=stamp))
            batches.append(ids)
        queries.save_scores(
            session, {i: result(0.8) for i in batches[-1]}, model_version="tiny-v2", shadow=True
        )
        rescored = start + timedelta(seconds=305)
        session.execute(
            update(Prediction).where(Prediction.model_version == "tiny-v2").values(created_at=rescored)
        )

    with session_scope(sessions) as session:
        report = queries.status(session)

    assert report["scored_last_window"] == 11
    assert report["busy_seconds"] == pytest.approx(4.0)
    assert report["throughput_per_second"] == pytest.approx(1.0)


@pytest.mark.integration
def test_two_ingesters_registering_the_same_bytes_at_once_get_one_image(pg_url: str) -> None:
    migrate.upgrade(pg_url)
    engine = make_engine(pg_url)
    sessions = make_session_factory(engine)
    rounds = 10
    barrier = threading.Barrier(2, timeout=30)
    results: dict[str, list[tuple[int, bool]]] = {"A": [], "B": []}

    def ingest(name: str) -> None:
        for n in range(rounds):
            barrier.wait()
            with session_scope(sessions) as session:
                # Two sites, one content: the image row is where the two transactions meet.
                results[name].append(
                    register(session, f"{name}{n}.jpg", content=f"lesion {n}", folder=f"/i/site{name}/d")
                )

    threads = [threading.Thread(target=ingest, args=(name,)) for name in results]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    try:
        assert len(results["A"]) == len(results["B"]) == rounds
        for (id_a, new_a), (id_b, new_b) in zip(results["A"], results["B"], strict=True):
            assert id_a == id_b
            assert [new_a, new_b].count(True) == 1  # exactly one of them sends it to be scored
        with session_scope(sessions) as session:
            assert count(session, Image) == rounds
            assert count(session, SeenFile) == 2 * rounds
    finally:
        engine.dispose()
