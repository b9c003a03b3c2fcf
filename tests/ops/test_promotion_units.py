"""Promotion's bookkeeping on a small database, without a model: sites to recalibrate, coverage."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from skinscreen.db import migrate, queries, sites
from skinscreen.db.session import make_engine, make_session_factory, session_scope
from skinscreen.db.tables import Image, utcnow
from skinscreen.ops.promotion import PromotionError, promote, sites_to_recalibrate
from skinscreen.results import FileScore


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
