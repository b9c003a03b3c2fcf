"""Sites in the database: the audit sample, flags that follow the site, calibration, clear and re-flag."""

from __future__ import annotations

import json

import numpy as np
import pytest

from skinscreen.db import audit, sites
from skinscreen.db.session import make_engine, make_session_factory, session_scope
from skinscreen.errors import CalibrationError
from skinscreen.sites import calibration, drift, stats
from tests.sites.conftest import MODEL, MODEL_THRESHOLD, SiteDb


def events(db: SiteDb, action: str) -> list[dict[str, object]]:
    engine = make_engine(db.url)
    with session_scope(make_session_factory(engine)) as session:
        rows, _ = audit.list_events(session, action=action)
    engine.dispose()
    return [json.loads(str(r["detail"])) for r in rows]


def test_the_audit_sample_of_1000_unflagged_cases_is_within_the_binomial_99_range(site_db: SiteDb) -> None:
    ids = site_db.add("ward7", np.linspace(0.01, 0.49, 1000).tolist(), fraction=0.05, save_path=False)
    predictions = site_db.predictions(ids)

    drawn = sum(p.audit for p in predictions.values())
    low, high = drift.binomial_range(1000, 0.05)
    assert low <= drawn <= high, (low, drawn, high)
    assert not any(p.flagged for p in predictions.values())


def test_the_draw_is_fixed_by_the_image_so_a_second_decision_draws_the_same(site_db: SiteDb) -> None:
    ids = site_db.add("ward7", [0.1] * 200, fraction=0.2, save_path=False)
    before = {i: p.audit for i, p in site_db.predictions(ids).items()}
    engine = make_engine(site_db.url)
    with session_scope(make_session_factory(engine)) as session:
        counts = sites.redecide(
            session, site="ward7", model_version=MODEL, threshold=MODEL_THRESHOLD, audit_fraction=0.2
        )
    engine.dispose()

    assert counts["audit_added"] == counts["audit_removed"] == 0
    assert {i: p.audit for i, p in site_db.predictions(ids).items()} == before
    assert 0 < sum(before.values()) < 200


def test_flagged_cases_are_never_audit_cases(site_db: SiteDb) -> None:
    ids = site_db.add("ward7", [0.9] * 30, fraction=1.0)
    assert not any(p.audit for p in site_db.predictions(ids).values())


def choose_on_a_sample(threshold_wanted: float) -> calibration.Calibration:
    """A calibration whose threshold is `threshold_wanted` (10 malignant above it, 10 benign below)."""
    labels = np.array([1] * 10 + [0] * 10)
    probs = np.array([threshold_wanted + 0.01 * i for i in range(10)] + [0.05 * i for i in range(10)])
    evidence = calibration.choose(labels, probs, target=0.9, model_threshold=MODEL_THRESHOLD)
    assert evidence["threshold"] == pytest.approx(threshold_wanted + 0.01)  # highest specificity at 9/10
    return calibration.Calibration("ward7", MODEL, evidence["threshold"], 0.9, "sample", evidence)


@pytest.mark.parametrize("db_name", ["site_db", pytest.param("pg_site_db", marks=pytest.mark.integration)])
def test_a_calibration_refits_unreviewed_cases_keeps_reviewed_ones_and_is_audited(
    db_name: str, request: pytest.FixtureRequest
) -> None:
    db: SiteDb = request.getfixturevalue(db_name)
    ward = db.add("ward7", [0.3, 0.6, 0.7, 0.95])
    other = db.add("clinic", [0.6])
    reviewed = ward[1]
    db.review({reviewed: "benign"})
    engine = make_engine(db.url)
    with session_scope(make_session_factory(engine)) as session:
        counts = calibration.apply(session, choose_on_a_sample(0.79), ran_by="admin", audit_fraction=0.0)
    engine.dispose()

    assert counts == {"cases": 3, "newly_flagged": 0, "unflagged": 1, "audit_added": 0, "audit_removed": 0}
    after = db.predictions(ward + other)
    assert [after[i].flagged for i in ward] == [False, True, False, True]
    assert after[reviewed].threshold == MODEL_THRESHOLD  # the case as it was reviewed
    assert after[ward[2]].threshold == pytest.approx(0.80)
    assert after[other[0]].flagged and after[other[0]].threshold == MODEL_THRESHOLD
    (calibrated,) = events(db, "site_calibrated")
    assert calibrated["site"] == "ward7" and calibrated["ran_by"] == "admin"
    assert calibrated["threshold"] == pytest.approx(0.80) and calibrated["n_malignant"] == 10
    assert events(db, "site_reflagged")[0]["unflagged"] == 1

    # New cases of the site are flagged with its threshold; clearing brings back the model's.
    (late,) = db.add("ward7", [0.75], tag="late")
    assert not db.predictions([late])[late].flagged
    engine = make_engine(db.url)
    with session_scope(make_session_factory(engine)) as session:
        calibration.clear(
            session,
            site="ward7",
            model_version=MODEL,
            model_threshold=MODEL_THRESHOLD,
            ran_by="admin",
            audit_fraction=0.0,
        )
    engine.dispose()
    assert db.predictions([late])[late].flagged
    assert events(db, "site_cleared")[0]["previous"] == pytest.approx(0.80)
    assert len(events(db, "site_reflagged")) == 2


def test_a_site_threshold_belongs_to_one_model_version(site_db: SiteDb) -> None:
    engine = make_engine(site_db.url)
    with session_scope(make_session_factory(engine)) as session:
        calibration.apply(session, choose_on_a_sample(0.79), ran_by="admin", audit_fraction=0.0)
        assert sites.threshold_in_force(
            session, site="ward7", model_version=MODEL, default=0.5
        ) == pytest.approx(0.8)
        assert sites.threshold_in_force(session, site="ward7", model_version="other-v2", default=0.5) == 0.5
    engine.dispose()


def test_clearing_a_site_without_a_threshold_is_refused(site_db: SiteDb) -> None:
    engine = make_engine(site_db.url)
    with session_scope(make_session_factory(engine)) as session, pytest.raises(CalibrationError):
        calibration.clear(
            session, site="ward7", model_version=MODEL, model_threshold=0.5, ran_by="x", audit_fraction=0.0
        )
    engine.dispose()


def seeded_reviewed_site(db: SiteDb, *, review_audit: bool) -> tuple[list[int], np.ndarray]:
    rng = np.random.default_rng(5)
    truth = rng.random(600) < 0.15
    probs = np.clip(rng.normal(0.3 + 0.35 * truth, 0.15), 0.001, 0.999)
    ids = db.add("ward7", probs.tolist(), fraction=0.2, save_path=False)
    preds = db.predictions(ids)
    verdicts = {}
    for i, image_id in enumerate(ids):
        p = preds[image_id]
        if p.flagged or (p.audit and review_audit):
            verdicts[image_id] = "malignant" if truth[i] else "benign"
    db.review(verdicts)
    return ids, truth


def test_calibration_from_reviews_needs_reviewed_audit_cases(site_db: SiteDb) -> None:
    seeded_reviewed_site(site_db, review_audit=False)
    engine = make_engine(site_db.url)
    with (
        session_scope(make_session_factory(engine)) as session,
        pytest.raises(CalibrationError, match="no reviewed audit"),
    ):
        calibration.from_reviews(session, site="ward7", model_version=MODEL, target=0.9, model_threshold=0.5)
    engine.dispose()


def test_calibration_from_reviews_weighs_audit_cases_by_the_sampling_fraction(site_db: SiteDb) -> None:
    ids, truth = seeded_reviewed_site(site_db, review_audit=True)
    preds = site_db.predictions(ids)
    engine = make_engine(site_db.url)
    with session_scope(make_session_factory(engine)) as session:
        chosen = calibration.from_reviews(
            session, site="ward7", model_version=MODEL, target=0.9, model_threshold=0.5
        )
        cost = calibration.cost(session, chosen, model_threshold=0.5)
    engine.dispose()

    flagged = np.array([preds[i].flagged for i in ids])
    audit = np.array([preds[i].audit for i in ids]) & ~flagged
    w_f, w_a = flagged.sum() / flagged.sum(), (~flagged).sum() / audit.sum()
    used = flagged | audit
    probs = np.array([preds[i].probability for i in ids])
    weights = np.where(flagged, w_f, w_a)[used]
    expected = stats.choose_threshold(truth[used], probs[used], target=0.9, weights=weights)
    assert chosen.threshold == expected
    assert chosen.evidence["reviews"]["weight_audit"] == pytest.approx(w_a)
    # Unweighted, the few reviewed unflagged cases would pull the threshold up: the weights matter.
    assert stats.choose_threshold(truth[used], probs[used], target=0.9) > expected
    # The cost names reviewed cases by id, and its sensitivity is the weighted one of the evidence.
    missed = [
        f"case {i}" for i, u, m, p in zip(ids, used, truth, probs, strict=True) if u and m and p < expected
    ]
    assert cost["sample"]["malignant_left_unflagged"] == missed
    assert cost["sample"]["sensitivity"] == chosen.evidence["at_threshold"]["sensitivity"]
