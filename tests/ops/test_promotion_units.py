"""Promotion's bookkeeping on a small database, without a model: sites to recalibrate, coverage."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from skinscreen.config import Settings
from skinscreen.db import migrate, queries, sites
from skinscreen.db.session import make_engine, make_session_factory, session_scope
from skinscreen.db.tables import Image, Prediction, utcnow
from skinscreen.ops.compare import compare_versions
from skinscreen.ops.promotion import PromotionError, promote, sites_to_recalibrate
from skinscreen.results import FileScore
from skinscreen.retention import purge, purgeable


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    """Two images in each of sites a and b, scored by v1."""
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    with session_scope(make_session_factory(engine)) as s:
        scores = {}
        for n, site in enumerate(["a", "a", "b", "b"]):
            path = tmp_path / site / f"{n}.jpg"
            image_id, _ = queries.register_file(
                s, path=str(path), size=1, mtime_ns=1, sha256=f"{n:064x}", site=site, folder=str(path.parent)
            )
            scores[image_id] = FileScore(path, 0.2, False, 0.5, None, "jpeg", None)
        queries.save_scores(s, scores, model_version="v1")
        yield s
    engine.dispose()


def test_a_site_calibrated_for_the_version_is_not_listed_to_recalibrate(session: Session) -> None:
    assert sites_to_recalibrate(session, "v2") == ["a", "b"]
    sites.set_threshold(
        session,
        site="a",
        model_version="v2",
        threshold=0.4,
        target_sensitivity=0.9,
        source="test",
        evidence={},
        created_by="test",
    )
    assert sites_to_recalibrate(session, "v2") == ["b"]
    assert sites_to_recalibrate(session, "v1") == ["a", "b"]  # a threshold belongs to one version


def test_a_purged_image_does_not_stop_a_promotion(session: Session) -> None:
    """Retention removed one file: no re-score can reach it, so it is not missing from the new version."""
    ids = list(session.execute(select(Image.id).order_by(Image.id)).scalars())
    rescored = {i: FileScore(Path(f"{i}.jpg"), 0.7, True, 0.5, None, "jpeg", None) for i in ids[:-1]}
    queries.save_scores(session, rescored, model_version="v2")
    with pytest.raises(PromotionError, match="has not scored 1 of 4"):
        promote(session, "v2")
    session.execute(update(Image).where(Image.id == ids[-1]).values(purged_at=utcnow()))
    done = promote(session, "v2")
    assert (done.version, done.scored, done.missing) == ("v2", 3, 0)


def test_compare_flags_both_versions_at_their_own_thresholds_unless_site_thresholds_are_asked(
    session: Session,
) -> None:
    """Site a calibrated v1 at 0.1, so v1's stored flags there are set; v2 was scored at its own 0.5.

    Comparing the stored flags would say v2 unflags site a's two cases, which is the calibration, not
    the model; by default both sides are flagged at their own thresholds, and the report says so.
    """
    ids = list(session.execute(select(Image.id).order_by(Image.id)).scalars())
    sites.set_threshold(
        session,
        site="a",
        model_version="v1",
        threshold=0.1,
        target_sensitivity=0.9,
        source="test",
        evidence={},
        created_by="test",
    )
    session.execute(
        update(Prediction).where(Prediction.image_id.in_(ids[:2])).values(flagged=True, threshold=0.1)
    )
    queries.save_scores(
        session,
        {i: FileScore(Path(f"{i}.jpg"), 0.3, False, 0.5) for i in ids},
        model_version="v2",
        shadow=True,
    )

    own = compare_versions(session, "v1", "v2", own={"v1": 0.5, "v2": 0.5}).as_dict()
    assert (own["agree"], own["flagged_old"], own["no_longer_flagged_ids"]) == (4, 0, [])
    assert own["thresholds"] == {
        v: {"rule": "the version's own threshold", "threshold": 0.5} for v in ("v1", "v2")
    }

    asked = compare_versions(session, "v1", "v2", own={"v1": 0.5, "v2": 0.5}, site_thresholds=True).as_dict()
    assert (asked["flagged_old"], asked["no_longer_flagged_ids"]) == (2, ids[:2])
    assert asked["thresholds"]["v1"]["sites"] == {"a": 0.1} and asked["thresholds"]["v2"]["sites"] == {}


def test_purge_and_status_count_flagged_cases_by_the_rule_reviewers_see(
    session: Session, tmp_path: Path
) -> None:
    """v2 flags two images in shadow: not flagged for status until promoted, and purge says the same;
    purge keeps those two files anyway, and says why."""
    ids = list(session.execute(select(Image.id).order_by(Image.id)).scalars())
    queries.save_scores(
        session,
        {i: FileScore(Path(f"{i}.jpg"), 0.7 if i in ids[:2] else 0.3, i in ids[:2], 0.5) for i in ids},
        model_version="v2",
        shadow=True,
    )
    settings = Settings(retention_days=0, heatmap_dir=tmp_path / "maps")

    def counts() -> tuple[int, int, int]:
        kept = purge(session, settings=settings, dry_run=True)
        return (
            queries.status(session)["flagged"],
            kept.kept_flagged_unreviewed,
            kept.kept_flagged_by_another_version,
        )

    assert counts() == (0, 0, 2)
    assert [i for i, *_ in purgeable(session, cutoff=utcnow())] == ids[2:]
    promote(session, "v2")
    assert counts() == (2, 2, 0)
