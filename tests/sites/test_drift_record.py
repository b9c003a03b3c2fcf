"""Drift warnings are recorded once, by whoever scores a batch; `status` and `/batches` only read them."""

from __future__ import annotations

import json
import shutil
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from skinscreen.cli import cli
from skinscreen.db import accounts
from skinscreen.db.audit import list_events
from skinscreen.db.session import make_engine, make_session_factory, session_scope
from skinscreen.db.tables import Role
from skinscreen.review.passwords import hash_password
from skinscreen.sites.drift import REFERENCE_BINS, Reference
from skinscreen.sites.report import ModelInfo, record_drift
from tests.conftest import copy_images, dataset_images
from tests.ops.conftest import PASSWORD, World, review_client
from tests.sites.conftest import MODEL, MODEL_THRESHOLD, SiteDb


def model_expecting_high_scores(tiny_model: Path, out: Path) -> Path:
    """The tiny model with a reference whose every score sits in the top bin: any real batch drifts."""
    shutil.copytree(tiny_model, out)
    card = json.loads((out / "card.json").read_text())
    counts = np.zeros(REFERENCE_BINS, dtype=int)
    counts[-1] = 1000
    card["reference"] = {"source": "test", "counts": counts.tolist(), "threshold": None, "flag_rate": None}
    (out / "card.json").write_text(json.dumps(card))
    return out


def drift_events(db_file: Path) -> list[dict[str, object]]:
    with sqlite3.connect(db_file) as conn:
        rows = conn.execute("SELECT detail FROM audit_event WHERE action = 'drift_warning'").fetchall()
    conn.close()
    return [json.loads(detail) for (detail,) in rows]


def row_counts(db_file: Path) -> dict[str, int]:
    with sqlite3.connect(db_file) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        counts = {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}
    conn.close()
    return counts


def test_a_drifting_batch_is_warned_once_when_scored_and_reading_it_writes_nothing(
    tiny_model: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model = model_expecting_high_scores(tiny_model, tmp_path / "model")
    inbox = tmp_path / "inbox"
    folder = inbox / "ward9" / "2026-12-01"
    images = dataset_images("benign", 13) + dataset_images("malignant", 13)
    copy_images(images[:22], folder)
    db_file = tmp_path / "skinscreen.db"
    env = {
        "SKINSCREEN_DATABASE_URL": f"sqlite:///{db_file}",
        "SKINSCREEN_MODEL": str(model),
        "SKINSCREEN_BACKEND": "onnx",
        "SKINSCREEN_SETTLE_SECONDS": "0",
        "SKINSCREEN_BATCH_WAIT": "0",
        "SKINSCREEN_BATCH_SIZE": "8",  # three scoring batches: the folder's last one finishes it
    }
    run = ["run", str(inbox), "--once", "--format", "json"]

    first = CliRunner().invoke(cli, run, env=env)
    assert first.exit_code == 0, first.output
    scored = json.loads(first.stdout)["scored"]
    assert scored >= 20  # enough to be judged (a few dataset files may be duplicates)
    warned = drift_events(db_file)
    assert len(warned) == 1 and warned[0]["site"] == "ward9", warned
    assert [r for r in caplog.records if "drift in batch" in r.getMessage()]

    # More files in the same folder: the batch finishes again, still drifting, and is not warned twice.
    copy_images(images[22:], folder)
    again = CliRunner().invoke(cli, run, env=env)
    assert again.exit_code == 0, again.output
    scored += json.loads(again.stdout)["scored"]
    assert drift_events(db_file) == warned

    # Reads: `status` twice, and the batches page.
    watcher = sqlite3.connect(db_file)  # its data_version moves when another connection commits a write
    version = watcher.execute("PRAGMA data_version").fetchone()[0]
    before = row_counts(db_file)
    caplog.clear()
    for _ in range(2):
        status = CliRunner().invoke(cli, ["status", "--format", "json"], env=env)
        assert status.exit_code == 0, status.output
        entry = next(d for d in json.loads(status.output)["drift"] if d["site"] == "ward9")
        assert entry["warning"] and entry["n"] == scored
    assert watcher.execute("PRAGMA data_version").fetchone()[0] == version
    assert row_counts(db_file) == before
    assert not [r for r in caplog.records if "drift in batch" in r.getMessage()]

    engine = make_engine(f"sqlite:///{db_file}")
    with session_scope(make_session_factory(engine)) as session:
        accounts.add_account(session, name="alice", role=Role.admin, password_hash=hash_password(PASSWORD))
    engine.dispose()
    world = World(root=tmp_path, inbox=inbox, db_file=db_file, env=env)
    with review_client(world, model) as (client, _):
        signed_in = row_counts(db_file)
        version = watcher.execute("PRAGMA data_version").fetchone()[0]
        page = client.get("/batches")
        assert page.status_code == 200 and "2026-12-01" in page.text
        assert watcher.execute("PRAGMA data_version").fetchone()[0] == version
        assert row_counts(db_file) == signed_in
    watcher.close()
    assert drift_events(db_file) == warned


def test_workers_finishing_one_batch_at_once_record_its_warning_once(pg_site_db: SiteDb) -> None:
    rng = np.random.default_rng(1)
    reference = Reference.from_scores(rng.beta(0.5, 0.6, 800), source="validation", threshold=MODEL_THRESHOLD)
    model = ModelInfo(MODEL, MODEL_THRESHOLD, reference)
    ids = pg_site_db.add("odd", rng.beta(3, 3, 60).tolist(), save_path=False)
    engine = make_engine(pg_site_db.url)
    sessions = make_session_factory(engine)
    start = threading.Barrier(4)

    def finish(part: list[int]) -> int:
        start.wait()
        with session_scope(sessions) as session:
            return len(record_drift(session, part, model=model))

    with ThreadPoolExecutor(4) as pool:
        recorded = list(pool.map(finish, [ids[i::4] for i in range(4)]))
    with session_scope(sessions) as session:
        again = record_drift(session, ids, model=model)
        events, total = list_events(session, action="drift_warning")
    engine.dispose()

    assert sorted(recorded) == [0, 0, 0, 1] and again == []
    assert total == 1 and json.loads(events[0]["detail"])["site"] == "odd"
