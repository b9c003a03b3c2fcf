"""Database errors classified once (real errors from PostgreSQL and SQLite); a batch stored around one."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from psycopg import errors as pg_errors
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session, sessionmaker

from skinscreen.db import migrate, queries
from skinscreen.db.errors import ErrorKind, classify, describe
from skinscreen.db.outcomes import store_scores
from skinscreen.db.session import make_engine, make_session_factory, session_scope
from skinscreen.db.tables import Image, Prediction, State
from skinscreen.results import DicomInfo, FileScore


def _error_of(engine: sa.Engine, statement: str, params: dict[str, object] | None = None) -> BaseException:
    with engine.connect() as conn:
        conn.execute(sa.text("CREATE TEMP TABLE IF NOT EXISTS t (v VARCHAR(4) UNIQUE, n INTEGER NOT NULL)"))
        conn.execute(sa.text("INSERT INTO t VALUES ('dup', 1)"))
        try:
            conn.execute(sa.text(statement), params or {})
        except Exception as exc:  # noqa: BLE001 - the error is what the test is about
            return exc
    raise AssertionError(f"{statement} did not fail")


@pytest.mark.integration
@pytest.mark.parametrize(
    ("statement", "params", "kind"),
    [
        ("INSERT INTO t VALUES (:v, 1)", {"v": "1.2.840." + "9" * 88}, ErrorKind.permanent),  # too long
        ("INSERT INTO t VALUES (:v, 1)", {"v": "a\x00b"}, ErrorKind.permanent),  # NUL in text
        ("INSERT INTO t VALUES (:v, 1)", {"v": "\ud800"}, ErrorKind.permanent),  # cannot be encoded
        ("INSERT INTO t VALUES ('dup', 1)", None, ErrorKind.permanent),  # unique violation
        ("INSERT INTO t VALUES ('x', NULL)", None, ErrorKind.permanent),  # not-null violation
        ("INSERT INTO t VALUES ('x', 'x')", None, ErrorKind.permanent),  # invalid text representation
        ("SELECT * FROM no_such_table", None, ErrorKind.other),  # the deployment's fault
        ("SELECT pg_terminate_backend(pg_backend_pid())", None, ErrorKind.transient),  # connection lost
    ],
)
def test_postgresql_errors(
    pg_url: str, statement: str, params: dict[str, object] | None, kind: ErrorKind
) -> None:
    engine = make_engine(pg_url)
    try:
        exc = _error_of(engine, statement, params)
    finally:
        engine.dispose()
    assert classify(exc) is kind, (type(exc), describe(exc))
    assert "9999" not in describe(exc) and "dup" not in describe(exc)  # no value in the log-safe name


@pytest.mark.parametrize(
    "orig",
    [pg_errors.SerializationFailure(), pg_errors.DeadlockDetected(), pg_errors.AdminShutdown()],
)
def test_serialization_deadlock_and_shutdown_are_transient(orig: Exception) -> None:
    wrapped = sa_exc.OperationalError("UPDATE image ...", {}, orig)
    assert classify(wrapped) is ErrorKind.transient


def test_sqlite_errors(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'e.db'}")
    try:
        assert classify(_error_of(engine, "INSERT INTO t VALUES ('dup', 1)")) is ErrorKind.permanent
        assert (
            classify(_error_of(engine, "INSERT INTO t VALUES (:v, 1)", {"v": "\ud800"}))
            is ErrorKind.permanent
        )
        assert classify(_error_of(engine, "SELECT * FROM no_such_table")) is ErrorKind.other
    finally:
        engine.dispose()
    locked = sa_exc.OperationalError("INSERT ...", {}, sqlite3.OperationalError("database is locked"))
    assert classify(locked) is ErrorKind.transient


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def sessions(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    """A migrated database's session factory; the engine is disposed afterwards."""
    url = f"sqlite:///{tmp_path / 'o.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    migrate.upgrade(url)
    engine = make_engine(url)
    yield make_session_factory(engine)
    engine.dispose()


def _score(probability: float | None, **extra: object) -> FileScore:
    flagged = None if probability is None else probability >= 0.6
    threshold = None if probability is None else 0.6
    return FileScore(Path("x.jpg"), probability, flagged, threshold, format="jpeg", **extra)  # type: ignore[arg-type]


def test_a_batch_with_one_refused_result_stores_the_others(sessions: sessionmaker[Session]) -> None:
    """A score for an image the database refuses (gone: a foreign-key violation) fails alone."""
    with session_scope(sessions) as session:
        ids = [
            queries.register_file(
                session,
                path=f"/in/s/d/{i}.jpg",
                size=1,
                mtime_ns=i,
                sha256=f"{i:064d}",
                site="s",
                folder="/in/s/d",
            )[0]
            for i in range(3)
        ]
    scores = {ids[0]: _score(0.5), 99_999: _score(0.7), ids[1]: _score(0.6), ids[2]: _score(0.8)}
    stored = store_scores(sessions, scores, model_version="v1")
    assert [s.probability is None for s in stored.values()] == [False, True, False, False]
    assert (stored[99_999].reason or "").startswith("the database refused this image's data: ")
    with session_scope(sessions) as session:
        states = dict(session.execute(sa.select(Image.id, Image.state)).all())
        predicted = set(session.execute(sa.select(Prediction.image_id)).scalars())
    assert all(states[i] == State.scored for i in ids)
    assert predicted == set(ids)


def test_dicom_values_are_fitted_before_they_are_written(sessions: sessionmaker[Session]) -> None:
    """Values longer than any column, NUL and a lone surrogate are stored (escaped, visibly cut)."""
    with session_scope(sessions) as session:
        image_id, _ = queries.register_file(
            session, path="/in/s/d/x.dcm", size=1, mtime_ns=1, sha256="f" * 64, site="s", folder="/in/s/d"
        )
    dicom = DicomInfo(study_uid="1." + "2" * 5000, body_site="back\x00\ud800", acquisition_date="2024")
    stored = store_scores(sessions, {image_id: _score(0.1, dicom=dicom)}, model_version="v")
    assert stored[image_id].probability == 0.1
    with session_scope(sessions) as session:
        row = session.get(Image, image_id)
        assert row is not None and row.state == State.scored
        assert row.study_uid is not None and row.study_uid.endswith("...[truncated, 5002 characters]")
        assert len(row.study_uid) == 256
        assert row.body_site == "back\\x00\\ud800"
