"""Model upgrades: install a second model, shadow re-score, compare, promote, and promote back."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.ops.conftest import IMAGES_PER_SITE, World, invoke, review_client

OLD, NEW = "tiny-test", "tiny-b"


def predictions(world: World, version: str) -> dict[int, tuple[float, bool]]:
    rows = world.rows(
        "SELECT image_id, probability, flagged FROM prediction WHERE model_version = ?", version
    )
    return {i: (p, bool(f)) for i, p, f in rows}


def latest_verdicts(world: World) -> dict[int, str]:
    rows = world.rows("SELECT image_id, verdict FROM review ORDER BY id")
    return dict(rows)  # later rows overwrite earlier ones: the latest verdict per case


def audit_actions(world: World) -> list[tuple[str, str]]:
    return world.rows("SELECT action, detail FROM audit_event WHERE account_id IS NULL ORDER BY id")


def api_cases(world: World, model: Path, **filters: str) -> list[dict[str, object]]:
    """The cases the review API lists (the queue is flagged=true&reviewed=false)."""
    with review_client(world, model) as (client, headers):
        page = client.get("/api/cases", params={"per_page": 500, **filters}, headers=headers)
        assert page.status_code == 200, page.text
        return list(page.json()["items"])


def test_models_add_checks_the_card_s_hashes_and_models_lists_it(tmp_path: Path, tiny_b: Path) -> None:
    env = {
        "SKINSCREEN_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}",
        "SKINSCREEN_MODELS_DIR": str(tmp_path / "m"),
    }
    tampered = tmp_path / "tampered"
    shutil.copytree(tiny_b, tampered)
    with (tampered / "model.onnx").open("ab") as fh:
        fh.write(b"\0")
    refused = invoke(env, "models", "add", str(tampered), code=1)
    assert "model.onnx: sha256" in str(refused.exception)
    assert not (tmp_path / "m" / NEW).exists()

    assert f"installed {NEW}" in invoke(env, "models", "add", str(tiny_b)).stdout
    assert (tmp_path / "m" / NEW).stat().st_mode & 0o777 == 0o755  # readable by workers of any user
    dotted = tmp_path / "dotted"
    shutil.copytree(tiny_b, dotted)
    card = json.loads((dotted / "card.json").read_text())
    (dotted / "card.json").write_text(json.dumps({**card, "version": "../escape"}))
    invoke(env, "models", "add", str(dotted))
    assert (tmp_path / "m" / "_escape").is_dir() and not (tmp_path / "escape").exists()
    assert "installed" in invoke(env, "models", "add", str(tiny_b)).stdout  # the same files again: no-op
    listed = {m["version"]: m for m in json.loads(invoke(env, "models", "--format", "json").stdout)}

    assert listed[NEW]["source"] == "installed"
    assert listed[NEW]["test_auc"] == 0.5 and listed[NEW]["views"] == 1
    shipped = [m for m in listed.values() if m["source"] == "shipped"]
    assert shipped and all(0 < m["threshold"] < 1 for m in shipped)
    assert (tmp_path / "m" / NEW / "model.onnx").is_file()
    table = invoke(env, "models").stdout
    assert table.splitlines()[0].split()[:4] == ["version", "source", "threshold", "views"]


def test_rescore_compare_promote_and_back(world: World, tiny_b: Path, tiny_model: Path) -> None:
    world.cli("models", "add", str(tiny_b))
    before = world.json("cases", "--format", "json")
    assert {c["model_version"] for c in before} == {OLD}
    assert "no predictions of tiny-b" in str(world.cli("models", "promote", NEW, code=1).exception)

    part = world.json("rescore", "--model", NEW, "--site", "site-a", "--format", "json")
    assert (part["targets"], part["scored"]) == (IMAGES_PER_SITE, IMAGES_PER_SITE)
    assert "has not scored 100 of 200" in str(world.cli("models", "promote", NEW, code=1).exception)
    rest = world.json("rescore", "--model", NEW, "--format", "json")
    assert rest == {**rest, "model_version": NEW, "targets": IMAGES_PER_SITE, "scored": IMAGES_PER_SITE}
    assert rest["failed"] == 0
    assert world.json("rescore", "--model", NEW, "--format", "json")["targets"] == 0  # unique per version
    old, new = predictions(world, OLD), predictions(world, NEW)
    assert len(old) == len(new) == 200
    assert part["flagged"] + rest["flagged"] == sum(f for _, f in new.values())
    # A shadow score changes nothing reviewers see.
    assert world.json("cases", "--format", "json") == before
    states = world.rows("SELECT DISTINCT state FROM image")
    assert states == [("scored",)]

    report = world.json("models", "compare", OLD, NEW, "--format", "json")
    # The hand computation, from the rows themselves.
    changed_up = sorted(i for i in old if new[i][1] and not old[i][1])
    changed_down = sorted(i for i in old if old[i][1] and not new[i][1])
    verdicts = {i: v for i, v in latest_verdicts(world).items() if v in ("malignant", "benign")}
    assert len(verdicts) == 25 and sum(v == "malignant" for v in verdicts.values()) == 12
    assert report["images_both"] == 200
    assert report["agree"] == 200 - len(changed_up) - len(changed_down)
    assert report["newly_flagged_ids"] == changed_up and report["no_longer_flagged_ids"] == changed_down
    assert changed_up or changed_down  # two different networks disagree somewhere
    assert report["with_verdict"] == 25
    for version, scores in ((OLD, old), (NEW, new)):
        c = report["against_verdicts"][version]
        tp = sum(scores[i][1] for i, v in verdicts.items() if v == "malignant")
        tn = sum(not scores[i][1] for i, v in verdicts.items() if v == "benign")
        assert (c["tp"], c["fn"], c["tn"], c["fp"]) == (tp, 12 - tp, tn, 13 - tn)
        assert c["sensitivity"] == pytest.approx(tp / 12) and c["specificity"] == pytest.approx(tn / 13)
    text = world.cli("models", "compare", OLD, NEW).stdout
    assert f"would become flagged    {len(changed_up)}" in text

    promoted = world.cli("models", "promote", NEW).stdout
    assert f"promoted {NEW} (was {OLD})" in promoted
    assert "sites to recalibrate for tiny-b: site-a, site-b" in promoted
    after = world.json("cases", "--format", "json")
    assert {c["model_version"] for c in after} == {NEW}
    assert {c["sha256"]: c["flagged"] for c in after} == {
        sha: new[i][1] for i, sha in world.rows("SELECT id, sha256 FROM image")
    }
    reviewed = {i for (i,) in world.rows("SELECT DISTINCT image_id FROM review")}
    queue = api_cases(world, tiny_model, flagged="true", reviewed="false")
    assert sorted(c["id"] for c in queue) == sorted(i for i in new if new[i][1] and i not in reviewed)
    assert {c["model_version"] for c in queue} == {NEW}

    assert f"promoted {OLD} again (was {NEW})" in world.cli("models", "rollback").stdout
    assert world.json("cases", "--format", "json") == before
    queue = api_cases(world, tiny_model, flagged="true", reviewed="false")
    assert sorted(c["id"] for c in queue) == sorted(i for i in old if old[i][1] and i not in reviewed)

    actions = audit_actions(world)
    assert [a for a, _ in actions] == ["model_installed"] + ["rescore"] * 3 + ["model_promoted"] * 2
    assert actions[1][1] == f"{NEW}: 100 scored, {part['flagged']} flagged, 0 failed of 100, site site-a"
    assert actions[4][1].startswith(f"{OLD} -> {NEW}; 200 images scored, 0 not")
    assert actions[5][1].startswith(f"{NEW} -> {OLD}")
    history = world.json("models", "history", "--format", "json")
    assert [h["model_version"] for h in history] == [OLD, NEW]
