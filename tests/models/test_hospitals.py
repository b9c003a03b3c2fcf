from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Iterator
from itertools import product
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from skinscreen.models.training.hospitals import (
    HospitalSet,
    diagnosis_group,
    evaluate_hospitals,
    hospital_name,
    read_diagnoses,
    render_table,
)
from tests.conftest import DATA, SHARED

ROSENDAHL = SHARED / "data" / "ham10000-rosendahl"
PH2 = SHARED / "data" / "ph2"
# A few real images per set: the HAM10000 set with its bcc, akiec and mel lesions, PH2 with its
# melanomas, and skin-cancer-mvb's test split, whose manifest names no diagnosis.
SAMPLES = {
    ROSENDAHL: {
        "benign": ["ISIC_0024336.jpg", "ISIC_0024371.jpg", "ISIC_0024377.jpg"],
        "malignant": [
            "ISIC_0025268.jpg",  # mel
            "ISIC_0024329.jpg",  # akiec
            "ISIC_0024511.jpg",  # akiec
            "ISIC_0024332.jpg",  # bcc
            "ISIC_0024403.jpg",  # bcc
        ],
    },
    PH2: {"benign": ["IMD002.jpg", "IMD003.jpg", "IMD004.jpg"], "malignant": ["IMD058.jpg", "IMD061.jpg"]},
    DATA / "test": {
        "benign": ["1.jpg", "10.jpg", "1003.jpg"],
        "malignant": ["1.jpg", "1003.jpg", "1005.jpg"],
    },
}

pytestmark = pytest.mark.skipif(
    not all(folder.is_dir() for folder in SAMPLES), reason="the shared hospital sets are not here"
)


@pytest.fixture(scope="module")
def sets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """Each set's sample copied under its own name, with the manifest rows of the copied files."""
    root = tmp_path_factory.mktemp("hospitals")
    folders = {}
    for source, classes in SAMPLES.items():
        name = hospital_name(source)
        folder = root / name
        for label, names in classes.items():
            (folder / label).mkdir(parents=True)
            for file in names:
                shutil.copy(source / label / file, folder / label / file)
        manifest = source / "MANIFEST.csv"
        if manifest.is_file() and source.name != "test":
            with manifest.open(newline="") as fh:
                reader = csv.DictReader(fh)
                fields = list(reader.fieldnames or [])
                rows = [r for r in reader if (folder / (r.get("path") or r["file"])).is_file()]
            with (folder / "MANIFEST.csv").open("w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=fields)
                writer.writeheader()
                writer.writerows(rows)
        folders[name] = folder
    yield folders


@pytest.fixture(scope="module")
def evaluated(
    sets: dict[str, Path], tiny_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, dict[str, Any]]]:
    from skinscreen.models.classifier import load_classifier

    out = tmp_path_factory.mktemp("out")
    classifier = load_classifier(tiny_model, backend="onnx", threads=1)
    chosen = [
        HospitalSet(sets["ham10000-rosendahl"]),
        HospitalSet(sets["ph2"]),
        HospitalSet(sets["skin-cancer-mvb/test"], trained_on=True),
    ]
    yield out, evaluate_hospitals(chosen, classifier=classifier, out=out, batch_size=4, progress=False)


def predictions(out: Path, name: str) -> list[dict[str, str]]:
    with (out / f"{name.replace('/', '-')}.predictions.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_each_hospital_row_matches_a_hand_count_of_its_predictions(
    evaluated: tuple[Path, dict[str, Any]],
) -> None:
    out, result = evaluated
    threshold = result["model"]["threshold"]

    assert [r["hospital"] for r in result["hospitals"]] == [
        "ham10000-rosendahl",
        "ph2",
        "skin-cancer-mvb/test",
    ]
    for row in result["hospitals"]:
        rows = predictions(out, row["hospital"])
        malignant = [float(r["probability"]) for r in rows if r["label"] == "malignant"]
        benign = [float(r["probability"]) for r in rows if r["label"] == "benign"]
        # AUC: the share of (malignant, benign) pairs the malignant case wins, ties counting half
        wins = sum(1.0 if m > b else 0.5 if m == b else 0.0 for m, b in product(malignant, benign))
        assert row["roc_auc"] == pytest.approx(wins / (len(malignant) * len(benign)))
        assert row["sensitivity"] == pytest.approx(sum(p >= threshold for p in malignant) / len(malignant))
        assert row["specificity"] == pytest.approx(sum(p < threshold for p in benign) / len(benign))
        assert (row["n"], row["n_benign"], row["n_malignant"]) == (len(rows), len(benign), len(malignant))
        low, high = row["intervals_95"]["roc_auc"]
        assert low <= row["roc_auc"] <= high


def test_sensitivity_per_diagnosis_group_follows_the_manifest(evaluated: tuple[Path, dict[str, Any]]) -> None:
    out, result = evaluated
    rows = {r["path"]: r for r in predictions(out, "ham10000-rosendahl")}
    flagged = {path: row["flagged"] == "1" for path, row in rows.items()}
    by_group = result["hospitals"][0]["sensitivity_by_group"]

    bcc_akiec = ["ISIC_0024329.jpg", "ISIC_0024511.jpg", "ISIC_0024332.jpg", "ISIC_0024403.jpg"]
    hits = sum(flagged[f"malignant/{f}"] for f in bcc_akiec)
    assert by_group["bcc/akiec"] == {"n": 4, "flagged": hits, "sensitivity": hits / 4}
    mel = int(flagged["malignant/ISIC_0025268.jpg"])
    assert by_group["melanoma"] == {"n": 1, "flagged": mel, "sensitivity": float(mel)}
    assert set(by_group) == {"melanoma", "bcc/akiec"}  # benign images are not in any group
    ph2 = result["hospitals"][1]["sensitivity_by_group"]
    assert set(ph2) == {"melanoma"} and ph2["melanoma"]["n"] == 2
    assert result["hospitals"][2]["sensitivity_by_group"] is None  # no diagnosis in that manifest


def test_the_written_table_has_one_row_per_hospital_and_marks_the_training_one(
    evaluated: tuple[Path, dict[str, Any]],
) -> None:
    out, result = evaluated
    table = (out / "hospitals.md").read_text()
    body = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line][1:]

    assert json.loads((out / "hospitals.json").read_text()) == result
    assert [line.split(" | ")[0] for line in body] == [
        "| ham10000-rosendahl",
        "| ph2",
        "| skin-cancer-mvb/test",
    ]
    assert [line.split(" | ")[1] for line in body] == ["no", "no", "yes"]
    assert f"{result['hospitals'][1]['roc_auc']:.3f} (" in body[1]


def test_a_malignant_image_missing_from_the_manifest_is_counted_as_unlisted(
    sets: dict[str, Path], tiny_model: Path, tmp_path: Path
) -> None:
    from skinscreen.models.classifier import load_classifier

    folder = Path(shutil.copytree(sets["ph2"], tmp_path / "ph2"))
    shutil.copy(folder / "malignant" / "IMD058.jpg", folder / "malignant" / "extra.jpg")
    classifier = load_classifier(tiny_model, backend="onnx", threads=1)

    row = evaluate_hospitals([HospitalSet(folder)], classifier=classifier, progress=False)["hospitals"][0]

    assert row["sensitivity_by_group"]["unlisted"]["n"] == 1
    assert row["sensitivity_by_group"]["melanoma"]["n"] == 2


def test_diagnoses_map_to_the_three_groups() -> None:
    assert [diagnosis_group(d) for d in ("mel", "Melanoma", "bcc", "akiec", "nv", "common nevus")] == [
        "melanoma",
        "melanoma",
        "bcc/akiec",
        "bcc/akiec",
        "other",
        "other",
    ]


def test_diagnoses_are_read_from_either_manifest_layout(sets: dict[str, Path]) -> None:
    assert read_diagnoses(sets["ph2"]) == {
        "benign/IMD002.jpg": "atypical nevus",
        "benign/IMD003.jpg": "common nevus",
        "benign/IMD004.jpg": "atypical nevus",
        "malignant/IMD058.jpg": "melanoma",
        "malignant/IMD061.jpg": "melanoma",
    }
    assert read_diagnoses(sets["ham10000-rosendahl"])["malignant/ISIC_0024332.jpg"] == "bcc"  # type: ignore[index]
    assert read_diagnoses(sets["skin-cancer-mvb/test"]) is None


def test_the_command_prints_one_row_per_hospital(sets: dict[str, Path], tiny_model: Path) -> None:
    from skinscreen.cli import cli

    result = CliRunner().invoke(
        cli,
        ["-q", "evaluate-hospitals", str(sets["ph2"]), "--trained-on", str(sets["skin-cancer-mvb/test"])],
        env={"SKINSCREEN_MODEL": str(tiny_model), "SKINSCREEN_BACKEND": "onnx"},
    )

    assert result.exit_code == 0, result.output
    rows = [
        line for line in result.output.splitlines() if line.startswith("| ph2") or line.startswith("| skin")
    ]
    assert len(rows) == 2
    assert rows[0].startswith("| ph2 | no | 5 (3/2) |")
    assert rows[1].startswith("| skin-cancer-mvb/test | yes | 6 (3/3) |")


def test_the_command_refuses_to_run_without_a_folder() -> None:
    from skinscreen.cli import cli

    result = CliRunner().invoke(cli, ["evaluate-hospitals"])

    assert result.exit_code != 0
    assert "at least one labelled folder" in result.output


def test_an_unreadable_file_is_counted_and_left_out_of_the_figures(
    sets: dict[str, Path], tiny_model: Path, tmp_path: Path
) -> None:
    from skinscreen.models.classifier import load_classifier

    folder = Path(shutil.copytree(sets["ph2"], tmp_path / "ph2"))
    (folder / "benign" / "bad.jpg").write_bytes(b"")
    classifier = load_classifier(tiny_model, backend="onnx", threads=1)

    result = evaluate_hospitals([HospitalSet(folder)], classifier=classifier, progress=False)
    row = result["hospitals"][0]

    assert row["unreadable"] == 1
    assert [u["path"] for u in row["unreadable_files"]] == ["benign/bad.jpg"]
    assert (
        "Unreadable files, not scored (with --out, each is listed with its reason in hospitals.json): ph2 1."
        in render_table(result)
    )
    assert (row["n"], row["n_benign"], row["n_malignant"]) == (5, 3, 2)
