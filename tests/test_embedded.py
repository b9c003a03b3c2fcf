"""The embedded default: `skinscreen run INBOX --once` on SQLite with the shipped model, no Redis."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import select

from skinscreen.config import Settings
from skinscreen.db.session import make_engine, make_session_factory, session_scope
from skinscreen.db.tables import Image, Prediction
from skinscreen.models.classifier import load_classifier
from skinscreen.models.registry import read_card, resolve_model_dir
from skinscreen.runner import run_embedded
from tests.conftest import REPO
from tests.worker.pipeline import cli, env_for


def run_and_predict(
    inbox: Path, tmp_path: Path, **settings: object
) -> tuple[dict, list[dict], dict[str, dict]]:
    env = env_for(database_url=f"sqlite:///{tmp_path / 'screen.db'}", **settings)
    summary = json.loads(cli(["run", str(inbox), "--once", "--format", "json"], env=env, timeout=900).stdout)
    cases = json.loads(cli(["cases", "--format", "json"], env=env).stdout)
    predicted = json.loads(cli(["predict", "--format", "json", str(inbox)], env=env, timeout=900).stdout)
    return summary, cases, {row["path"]: row for row in predicted}


def test_the_sample_inbox_is_scored_with_the_shipped_model(tmp_path: Path) -> None:
    inbox = Path(__file__).resolve().parents[1] / "samples" / "inbox"
    summary, cases, predicted = run_and_predict(inbox, tmp_path)
    assert summary["scored"] == 11 and summary["failed"] == 0
    assert summary["model_version"] == read_card(resolve_model_dir("default")).version
    for case in cases:
        assert case["probability"] == pytest.approx(predicted[case["path"]]["probability"], abs=1e-5)
    # The SQLite file is in WAL mode so reviewers can read while the scorer writes.
    with sqlite3.connect(tmp_path / "screen.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


@pytest.mark.slow
def test_the_whole_test_split_is_scored_and_exactly_the_images_at_or_above_threshold_are_flagged(
    data_dir: Path, tmp_path: Path
) -> None:
    summary, cases, predicted = run_and_predict(data_dir / "test", tmp_path)
    assert summary["files_seen"] == 660 and summary["scored"] == 660 and summary["failed"] == 0
    assert len(cases) == 660
    threshold = cases[0]["threshold"]
    for case in cases:
        reference = predicted[case["path"]]
        assert case["state"] == "scored"
        assert case["probability"] == pytest.approx(reference["probability"], abs=1e-5)
        assert case["flagged"] == (reference["probability"] >= threshold) == reference["flagged"]
    assert summary["flagged"] == sum(c["flagged"] for c in cases)


def test_an_image_scored_in_process_is_stamped_sent_once_before_it_is_scored(
    tmp_path: Path, tiny_model: Path
) -> None:
    inbox = tmp_path / "inbox" / "siteA"
    inbox.mkdir(parents=True)
    for src in sorted((REPO / "samples" / "inbox").iterdir())[:3]:
        shutil.copy(src, inbox / src.name)
    url = f"sqlite:///{tmp_path / 'screen.db'}"
    settings = Settings(database_url=url, settle_seconds=0, batch_size=2, batch_wait=0)
    classifier = load_classifier(tiny_model, backend="onnx", threads=1)

    summary = run_embedded(
        [inbox.parent], settings=settings, once=True, progress=False, classifier=classifier
    )

    assert summary.counts.scored == 3
    engine = make_engine(url)
    with session_scope(make_session_factory(engine)) as session:
        rows = session.execute(select(Image, Prediction).join(Prediction)).all()
        assert len(rows) == 3
        for image, prediction in rows:
            assert image.attempts == 1
            assert image.queued_at is not None and image.queued_at <= prediction.created_at
    engine.dispose()


def test_the_progress_bar_shows_a_batch_s_flagged_count_as_soon_as_the_batch_is_stored() -> None:
    """Watching an inbox, the bar is not updated again until the next batch: it is drawn at once."""
    import io

    from tqdm import tqdm

    from skinscreen.counts import Counts
    from skinscreen.runner import show_progress

    out = io.StringIO()
    bar = tqdm(total=10, file=out, mininterval=3600, dynamic_ncols=False, ncols=100)

    def shown() -> str:
        return out.getvalue().split("\r")[-1]

    show_progress(bar, 4, Counts(scored=4, flagged=3, failed=1))
    assert "4/10" in shown() and "flagged=3" in shown() and "failed=1" in shown()
    show_progress(bar, 2, Counts(scored=6, flagged=5, failed=1))
    assert "6/10" in shown() and "flagged=5" in shown()
    bar.close()
