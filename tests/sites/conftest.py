"""A database with sites: images registered under inbox/<site>/<date>/ and scored with given probabilities."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from skinscreen.db import accounts, migrate, queries, sites
from skinscreen.db.session import make_engine, make_session_factory, session_scope
from skinscreen.db.tables import Image, Prediction, Role, State, Verdict, utcnow
from skinscreen.db.verdicts import add_review
from skinscreen.flagging import is_flagged
from skinscreen.results import FileScore

MODEL = "tiny-v1"
MODEL_THRESHOLD = 0.5


@dataclass
class SiteDb:
    """A migrated database and helpers to fill it."""

    url: str
    ids: dict[str, list[int]] = field(default_factory=dict)

    def sessions(self) -> Session:
        engine = make_engine(self.url)
        return make_session_factory(engine)()

    def add(
        self,
        site: str,
        probabilities: Sequence[float],
        *,
        fraction: float = 0.0,
        batch: str = "2026-11-30",
        tag: str = "",
        save_path: bool = True,
    ) -> list[int]:
        """Register and score one image per probability under inbox/<site>/<batch>/.

        Thresholds come from `sites.thresholds_in_force`, as the scoring path does. With `save_path` the
        predictions go through `queries.save_scores`; without, through the same `sites.audit_ids` in one
        bulk insert (for the large samples: a statement a case is slow on a busy machine).
        """
        engine = make_engine(self.url)
        now = utcnow()
        with session_scope(make_session_factory(engine)) as session:
            batch_id = queries.folder_batch(session, site=site, folder=f"/inbox/{site}/{batch}")
            shas = [
                hashlib.sha256(f"{site}/{batch}/{tag}{i}".encode()).hexdigest()
                for i in range(len(probabilities))
            ]
            rows = [
                {
                    "batch_id": batch_id,
                    "path": f"/inbox/{site}/{batch}/{tag}{i}.jpg",
                    "size": 1,
                    "sha256": sha,
                    "state": State.queued.value,
                    "attempts": 0,
                    "created_at": now,
                    "updated_at": now,
                }
                for i, sha in enumerate(shas)
            ]
            session.execute(insert(Image), rows)
            found = session.execute(select(Image.sha256, Image.id).where(Image.sha256.in_(shas)))
            by_sha = {sha: image_id for sha, image_id in found}
            ids = [by_sha[sha] for sha in shas]
            scores = list(zip(ids, probabilities, strict=True))
            limits = sites.thresholds_in_force(session, ids, model_version=MODEL, default=MODEL_THRESHOLD)
            flagged = {i: is_flagged(p, limits[i]) for i, p in scores}
            if save_path:
                queries.save_scores(
                    session,
                    {i: FileScore(Path(f"{i}.jpg"), p, flagged[i], limits[i]) for i, p in scores},
                    model_version=MODEL,
                    audit_fraction=fraction,
                )
            else:
                audit = sites.audit_ids(session, flagged, fraction=fraction)
                session.execute(
                    insert(Prediction),
                    [
                        {
                            "image_id": i,
                            "model_version": MODEL,
                            "probability": p,
                            "flagged": flagged[i],
                            "threshold": limits[i],
                            "audit": i in audit,
                            "created_at": now,
                        }
                        for i, p in scores
                    ],
                )
                session.execute(update(Image).where(Image.id.in_(ids)).values(state=State.scored))
        engine.dispose()
        self.ids.setdefault(site, []).extend(ids)
        return ids

    def predictions(self, ids: Sequence[int]) -> dict[int, Prediction]:
        engine = make_engine(self.url)
        with session_scope(make_session_factory(engine)) as session:
            rows = session.execute(select(Prediction).where(Prediction.image_id.in_(list(ids)))).scalars()
            out = {p.image_id: p for p in rows}
            session.expunge_all()
        engine.dispose()
        return out

    def review(self, verdicts: dict[int, str], *, reviewer: str = "alice") -> None:
        engine = make_engine(self.url)
        with session_scope(make_session_factory(engine)) as session:
            account = accounts.account_named(session, reviewer)
            if account is None:
                account = accounts.add_account(session, name=reviewer, role=Role.reviewer, password_hash="x")
            for image_id, verdict in verdicts.items():
                add_review(
                    session, image_id=image_id, account_id=account.id, verdict=Verdict(verdict), note=None
                )
        engine.dispose()


@pytest.fixture
def site_db(tmp_path: Path) -> SiteDb:
    url = f"sqlite:///{tmp_path / 'skinscreen.db'}"
    migrate.upgrade(url)
    return SiteDb(url)


@pytest.fixture
def pg_site_db(pg_url: str) -> SiteDb:
    migrate.upgrade(pg_url)
    return SiteDb(pg_url)
