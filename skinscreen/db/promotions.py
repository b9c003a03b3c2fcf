"""Which model version is promoted: the one fact every part reads to know the model in force.

Workers score with it (reading it between batches), and the review server, drift, the site pages,
`/metrics` and `skinscreen status` judge with it. `skinscreen models promote` writes it
(`skinscreen.ops.promotion`); before the first promotion there is none and SKINSCREEN_MODEL is in force.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from skinscreen.db.tables import ModelPromotion


def promoted_version(session: Session) -> str | None:
    """The version promoted last, or None when no version was ever promoted (one primary-key read)."""
    stmt = select(ModelPromotion.model_version).order_by(ModelPromotion.id.desc()).limit(1)
    return session.execute(stmt).scalar_one_or_none()
