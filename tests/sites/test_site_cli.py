"""The site commands through click: calibrate refuses small samples, sites reports estimates, status
lists drift without writing."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from skinscreen.cli import cli
from skinscreen.errors import CalibrationError
from skinscreen.sites import stats
from skinscreen.sites.drift import Reference
from tests.review.conftest import draw_lesion
from tests.sites.conftest import MODEL, MODEL_THRESHOLD, SiteDb


def card_only_model(folder: Path, *, reference: Reference | None) -> Path:
    """A model directory with just its card: what `sites` and `status` read (no network is loaded)."""
    folder.mkdir(parents=True, exist_ok=True)
    card: dict[str, object] = {"version": MODEL, "threshold": MODEL_THRESHOLD, "input_size": 64}
    if reference is not None:
        card["reference"] = reference.as_dict()
    (folder / "card.json").write_text(json.dumps(card))
    return folder


def test_calibrate_with_three_malignant_images_refuses_with_the_reason(tmp_path: Path) -> None:
    sample = tmp_path / "sample"
    for label, count in (("malignant", 3), ("benign", 30)):
        (sample / label).mkdir(parents=True)
        for i in range(count):
            draw_lesion(sample / label / f"{i}.jpg", seed=i, size=64)
    db = f"sqlite:///{tmp_path / 'skinscreen.db'}"

    result = CliRunner().invoke(cli, ["--database-url", db, "calibrate", str(sample), "--site", "ward7"])

    assert isinstance(result.exception, CalibrationError)
    message = str(result.exception)
    assert "cannot support sensitivity 0.90" in message
    assert "3 malignant images allow only the sensitivities 0, 1/3, 2/3, 1" in message
    assert "at least 10 malignant" in message and "this sample: 3 malignant, 30 benign" in message


def test_calibrate_needs_exactly_one_source(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["calibrate", "--site", "ward7"])
    assert result.exit_code == 2 and "exactly one of FOLDER, --from-reviews or --clear" in result.output


def test_sites_reports_the_weighted_estimates_of_each_site(site_db: SiteDb, tmp_path: Path) -> None:
    ids = site_db.add("ward7", [0.9, 0.8, 0.7, 0.6] + [0.1] * 40, fraction=0.25)
    site_db.add("clinic", [0.2, 0.3])
    preds = site_db.predictions(ids)
    audit = [i for i in ids if preds[i].audit]
    site_db.review({ids[0]: "malignant", ids[1]: "malignant", ids[2]: "benign"})
    site_db.review({audit[0]: "malignant", **{i: "benign" for i in audit[1:]}})
    model = card_only_model(tmp_path / "model", reference=None)

    result = CliRunner().invoke(
        cli, ["--database-url", site_db.url, "sites", "--format", "json", "--model", str(model)]
    )

    assert result.exit_code == 0, result.output
    rows = {r["site"]: r for r in json.loads(result.output)}
    assert set(rows) == {"clinic", "ward7"}
    ward = rows["ward7"]
    assert (ward["images"], ward["flagged"], ward["audit"]) == (44, 4, len(audit))
    assert ward["threshold"] == MODEL_THRESHOLD and ward["threshold_source"] == "model"
    flagged = np.array([preds[i].flagged for i in ids])
    marks = np.array([preds[i].audit for i in ids])
    verdict = np.array([None] * len(ids), dtype=object)
    verdict[:3] = ["malignant", "malignant", "benign"]
    for i in audit:
        verdict[ids.index(i)] = "malignant" if i == audit[0] else "benign"
    expected = stats.site_estimate(flagged, marks, verdict)
    # By hand: TP = 4 x 2/3, FN = 40 x 1/len(audit); sensitivity = TP / (TP + FN)
    tp, fn = 4 * 2 / 3, 40 / len(audit)
    assert ward["estimate"]["sensitivity"]["value"] == pytest.approx(tp / (tp + fn))
    assert ward["estimate"]["sensitivity"] == pytest.approx(expected.sensitivity.as_dict())
    assert ward["estimate"]["ppv"]["value"] == pytest.approx(2 / 3)
    assert rows["clinic"]["estimate"]["sensitivity"]["value"] is None

    table = CliRunner().invoke(cli, ["--database-url", site_db.url, "sites", "--model", str(model)])
    assert "ward7: 44 images" in table.output and "estimated sensitivity" in table.output


def sqlite_state(url: str) -> tuple[dict[str, int], str]:
    """Rows in every table, and the bytes of the database file and its write-ahead log, hashed."""
    path = Path(url.removeprefix("sqlite:///"))
    with sqlite3.connect(path) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        counts = {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}
    conn.close()
    digest = hashlib.sha256()
    for part in (path, path.with_name(path.name + "-wal")):
        digest.update(part.read_bytes() if part.exists() else b"-")
    return counts, digest.hexdigest()


def test_status_lists_drift_per_batch_and_writes_nothing(
    site_db: SiteDb, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rng = np.random.default_rng(0)
    reference = Reference.from_scores(rng.beta(0.5, 0.6, 800), source="validation", threshold=MODEL_THRESHOLD)
    model = card_only_model(tmp_path / "model", reference=reference)
    site_db.add("calm", rng.beta(0.5, 0.6, 60).tolist(), save_path=False)
    site_db.add("odd", rng.beta(3, 3, 60).tolist(), save_path=False)
    site_db.add("tiny", [0.5] * 5, save_path=False)
    args = ["--database-url", site_db.url, "status", "--format", "json"]
    before = sqlite_state(site_db.url)
    # A connection's data_version changes when any other connection commits a write.
    watcher = sqlite3.connect(site_db.url.removeprefix("sqlite:///"))
    version = watcher.execute("PRAGMA data_version").fetchone()[0]

    report = json.loads(CliRunner().invoke(cli, args, env={"SKINSCREEN_MODEL": str(model)}).output)
    again = json.loads(CliRunner().invoke(cli, args, env={"SKINSCREEN_MODEL": str(model)}).output)

    drift = {d["site"]: d for d in report["drift"]}
    assert drift["calm"]["warning"] is None
    assert "PSI" in drift["odd"]["warning"]
    assert drift["odd"]["psi"] > drift["odd"]["psi_limit"]
    documented = {"site", "batch", "flagged_rate", "expected_range", "psi", "psi_limit", "warning"}
    assert all(set(entry) >= documented for entry in drift.values())  # judged or not: the same keys
    assert drift["tiny"]["warning"] is None and "not judged" in drift["tiny"]["note"]
    assert again["drift"] == report["drift"]
    text = CliRunner().invoke(cli, args[:-2], env={"SKINSCREEN_MODEL": str(model)}).output
    assert "DRIFT site odd" in text and "calm" not in text
    # Reads never write: no row (the audit trail included), no committed change, no warning logged.
    assert watcher.execute("PRAGMA data_version").fetchone()[0] == version
    watcher.close()
    assert sqlite_state(site_db.url) == before
    assert before[0]["audit_event"] == 0
    assert not [r for r in caplog.records if "drift in batch" in r.getMessage()]


def test_the_sites_package_imports_before_the_review_package() -> None:
    # The review routes import skinscreen.sites; the sites modules import the audit trail lazily.
    code = "import skinscreen.sites.report, skinscreen.sites.calibration, skinscreen.cli.site_commands"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_a_calibration_that_raises_the_threshold_lists_every_malignant_image_it_unflags_first(
    tmp_path: Path, tiny_model: Path
) -> None:
    """The model flags the whole sample (threshold 0); a site threshold for 0.90 unflags some cancers.

    The report names each of them (and only them) before anything is stored, and the calibration is
    refused until the lower sensitivity is accepted.
    """
    import shutil

    from skinscreen.db.session import make_engine, make_session_factory, session_scope
    from skinscreen.db.sites import threshold_in_force
    from skinscreen.flagging import is_flagged
    from skinscreen.models.classifier import load_classifier
    from skinscreen.models.screening import score_files

    model = shutil.copytree(tiny_model, tmp_path / "model")
    card = json.loads((model / "card.json").read_text())
    (model / "card.json").write_text(json.dumps({**card, "threshold": 0.0}))
    sample = tmp_path / "sample"
    for label, count, first in (("malignant", 20, 0), ("benign", 10, 100)):
        (sample / label).mkdir(parents=True)
        for i in range(count):
            draw_lesion(sample / label / f"{label[0]}{i}.jpg", seed=first + i, size=64)
    db = f"sqlite:///{tmp_path / 'skinscreen.db'}"
    args = ["--database-url", db, "calibrate", str(sample), "--site", "ward7", "--model", str(model)]

    refused = CliRunner().invoke(cli, [*args, "--format", "json"])

    assert isinstance(refused.exception, CalibrationError), refused.output
    assert "--accept-lower-sensitivity" in str(refused.exception)
    report = json.loads(refused.output)
    assert report["applied"] is False and report["cost"]["threshold_in_force"] == 0.0
    new = report["threshold"]
    malignant = sorted((sample / "malignant").iterdir())
    scores = score_files(malignant, classifier=load_classifier(model, backend="onnx"))
    unflagged = [f"malignant/{s.path.name}" for s in scores if not is_flagged(s.probability or 0.0, new)]
    assert 1 <= len(unflagged) <= 2  # 0.90 of 20 malignant images: 18 flagged at least
    assert sorted(report["cost"]["sample"]["malignant_left_unflagged"]) == sorted(unflagged)
    assert sorted(report["cost"]["sample"]["malignant_newly_unflagged"]) == sorted(unflagged)
    assert report["cost"]["sample"]["sensitivity"]["value"] == pytest.approx(1 - len(unflagged) / 20)
    assert report["cost"]["sample"]["flag_rate_in_force"] == 1.0
    engine = make_engine(db)
    with session_scope(make_session_factory(engine)) as session:
        assert threshold_in_force(session, site="ward7", model_version=card["version"], default=-1) == -1
    engine.dispose()

    applied = CliRunner().invoke(cli, [*args, "--accept-lower-sensitivity"])

    assert applied.exit_code == 0, applied.output
    listed = applied.output.split("leaves unflagged:")[1].split("flag rate")[0]
    assert sorted(line.split()[0] for line in listed.splitlines()[1:] if line.strip()) == sorted(unflagged)
    assert "sensitivity 0.9" in applied.output and "flag rate on the sample: 1.000 ->" in applied.output
    engine = make_engine(db)
    with session_scope(make_session_factory(engine)) as session:
        assert threshold_in_force(session, site="ward7", model_version=card["version"], default=-1) == new
    engine.dispose()
