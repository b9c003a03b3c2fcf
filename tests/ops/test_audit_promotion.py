"""The blinded audit sample composes with model promotion: re-scores are drawn too, the shown one rules."""

from __future__ import annotations

from pathlib import Path

from skinscreen.db.sites import in_audit_sample
from tests.ops.conftest import World, review_client
from tests.ops.test_model_upgrade import NEW, api_cases

FRACTION = 0.05  # SKINSCREEN_AUDIT_FRACTION's default, which `run` and `rescore` both use here


def test_a_promoted_version_s_audit_cases_are_listed_and_blinded(
    world: World, tiny_b: Path, tiny_model: Path
) -> None:
    world.cli("models", "add", str(tiny_b))
    world.cli("rescore", "--model", NEW)
    rows = world.rows(
        "SELECT p.image_id, p.model_version, p.flagged, p.audit, i.sha256 "
        "FROM prediction p JOIN image i ON i.id = p.image_id"
    )
    assert len(rows) == 400
    for _, _, flagged, audit, sha in rows:  # first scores and shadow re-scores draw the same way
        assert bool(audit) == in_audit_sample(sha, flagged=bool(flagged), fraction=FRACTION)
    new_audit = {i for i, version, _, audit, _ in rows if version == NEW and audit}
    assert new_audit

    world.cli("models", "promote", NEW)
    reviewed = {i for (i,) in world.rows("SELECT DISTINCT image_id FROM review")}
    listed = api_cases(world, tiny_model, audit="true")
    assert {c["id"] for c in listed} == new_audit
    assert {c["model_version"] for c in listed} == {NEW}
    blinded = [c for c in listed if c["id"] not in reviewed]
    assert blinded and all(c["blinded"] and c["probability"] is None for c in blinded)
    with review_client(world, tiny_model) as (client, headers):
        heatmap = client.get(f"/api/cases/{blinded[0]['id']}/heatmap.png", headers=headers)
        assert heatmap.status_code == 403
