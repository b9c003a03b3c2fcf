"""Training smoke run, export to ONNX, and `predict`: real MobileNetV2, small inputs, few images."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from skinscreen.cli import cli
from tests.conftest import WEIGHTS, dataset_images

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One short multi-site run: 16 images per class at 96x96 with only train/ present, plus an
    extra site's folder of 8 per class (other dataset images standing in for another hospital)."""
    if not WEIGHTS.exists():
        pytest.skip(f"ImageNet weights not found at {WEIGHTS}")
    data = tmp_path_factory.mktemp("data")
    for label in ("benign", "malignant"):
        (data / "train" / label).mkdir(parents=True)
        for src in dataset_images(label, 16, split="train"):
            shutil.copy(src, data / "train" / label / src.name)
        (data.parent / "site-b" / label).mkdir(parents=True)
        for src in dataset_images(label, 24, split="train")[16:]:
            shutil.copy(src, data.parent / "site-b" / label / src.name)
    out = data.parent / "run"
    # Distilled from a made-up teacher: 0.9 for every malignant training image, 0.1 for every benign.
    names = [f"train/{p.parent.name}/{p.name}" for p in sorted((data / "train").glob("*/*"))]
    names += [f"site-b/{p.parent.name}/{p.name}" for p in sorted((data.parent / "site-b").glob("*/*"))]
    scores = np.asarray([[0.9 if "/malignant/" in n else 0.1] * 8 for n in names], dtype="float32")
    labels = np.zeros(len(names))
    np.savez(data.parent / "teacher.npz", names=np.asarray(names), labels=labels, made_up=scores)
    result = CliRunner().invoke(
        cli,
        [
            "train",
            str(data),
            "--out",
            str(out),
            "--recipe",
            "multisite",
            "--extra",
            str(data.parent / "site-b"),
            "--size",
            "96",
            "--backbone-weights",
            str(WEIGHTS),
            "--epochs-scale",
            "0.01",
            "--seed",
            "3",
            "--teacher",
            str(data.parent / "teacher.npz"),
            "--distill-weight",
            "0.3",
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    return out


def test_training_writes_the_model_history_split_and_curves(trained_run: Path) -> None:
    run = json.loads((trained_run / "run.json").read_text())
    assert run["epochs"]["head"] == 1 and run["epochs"]["finetune"] == 1
    assert run["input_size"] == 96 and run["seed"] == 3
    assert 0.0 <= run["threshold"] <= 1.0
    assert run["validation"]["sensitivity"] >= 0.9  # the threshold rule, on validation
    history = json.loads((trained_run / "history.json").read_text())
    assert len(history["loss"]) == 2 and len(history["val_loss"]) == 2
    # Soft targets (0.03 / 0.97 here): training accuracy is still measured against the labels.
    assert max(history["accuracy"]) > 0.2 and max(history["auc"]) > 0.2
    for name in ("model.keras", "fig5_accuracy.png", "fig6_loss.png"):
        assert (trained_run / name).stat().st_size > 0
    split = json.loads((trained_run / "split.json").read_text())
    assert not set(split["train"]) & set(split["validation"])
    names = split["train"] + split["validation"]
    assert sum(p.startswith("train/") for p in names) == 32
    assert sum(p.startswith("site-b/") for p in names) == 16
    assert run["images_by_source"]["site-b"] == {"train": 12, "validation": 4}  # 20 % of each class
    assert len(run["validation_by_source"]) == 2 and "site-b" in run["validation_by_source"]
    assert run["teacher"]["teachers"] == ["made_up"] and run["teacher"]["weight"] == 0.3


def test_the_onnx_export_gives_the_keras_probabilities(trained_run: Path, tmp_path: Path) -> None:
    from skinscreen.models.classifier import load_classifier
    from skinscreen.models.training.dataset import load_pixels

    out = tmp_path / "model"
    result = CliRunner().invoke(cli, ["export", str(trained_run), "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    card = json.loads((out / "card.json").read_text())
    assert card["input_size"] == 96 and card["tta"] == "none" and card["views"] == 1
    assert card["preprocessing"]["colour_constancy"].startswith("Shades of Gray, p=6")
    assert "not a diagnosis" in (out / "MODEL_CARD.md").read_text()
    assert (
        "Distilled from made_up (8 views each; targets 0.7 x label + 0.3 x teacher"
        in (out / "MODEL_CARD.md").read_text()
    )
    # The drift reference: the main archive's validation images only (tests/sites covers its use).
    data = Path(json.loads((trained_run / "run.json").read_text())["train_dir"]).parent
    reference = CliRunner().invoke(
        cli,
        ["model-reference", "--model", str(out), "--data", str(data), "--out", str(tmp_path / "card.json")],
        catch_exceptions=False,
    )
    assert reference.exit_code == 0, reference.output
    split = json.loads((trained_run / "split.json").read_text())
    main_validation = [n for n in split["validation"] if n.startswith("train/")]
    assert 0 < len(main_validation) < len(split["validation"])
    assert json.loads((tmp_path / "card.json").read_text())["reference"]["n"] == len(main_validation)
    pixels = load_pixels(dataset_images("benign", 6) + dataset_images("malignant", 6), size=96)
    onnx = load_classifier(out, backend="onnx").predict(pixels)
    keras = load_classifier(out, backend="keras").predict(pixels)
    assert np.abs(onnx - keras).max() <= 1e-4
    assert onnx.std() > 0  # a real model, not a constant


def test_predict_scores_files_and_folders_and_gives_a_reason_for_unreadable_ones(
    tiny_model: Path, tmp_path: Path
) -> None:
    from skinscreen.models.classifier import load_classifier
    from skinscreen.models.training.dataset import load_pixels

    folder = tmp_path / "drop"
    folder.mkdir()
    images = dataset_images("malignant", 3)
    for src in images:
        shutil.copy(src, folder / src.name)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    single = dataset_images("benign", 1)[0]

    runner = CliRunner()
    result = runner.invoke(cli, ["predict", "--model", str(tiny_model), str(folder), str(single)])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert list(rows[0]) == ["path", "probability", "flagged", "reason"]
    # Keyed by the whole path: the benign and the first malignant image are both called 1.jpg.
    by_path = {str(Path(r["path"]).resolve()): r for r in rows}
    by_name = {Path(r["path"]).name: r for r in rows if Path(r["path"]).parent.resolve() == folder.resolve()}
    assert by_name["broken.jpg"]["probability"] == "" and by_name["broken.jpg"]["reason"]

    clf = load_classifier(tiny_model)
    expected = clf.predict(load_pixels([folder / p.name for p in images] + [single], size=clf.input_size))
    got = [float(by_name[p.name]["probability"]) for p in images] + [
        float(by_path[str(single.resolve())]["probability"])
    ]
    assert np.allclose(got, expected, atol=1e-6)
    for p, prob in zip(images, got[:3], strict=True):
        assert by_name[p.name]["flagged"] == str(prob >= clf.threshold)

    as_json = json.loads(
        runner.invoke(cli, ["predict", "--model", str(tiny_model), "--format", "json", str(folder)]).stdout
    )
    assert {"path", "probability", "flagged", "reason"} <= set(as_json[0])
    assert [r["reason"] for r in as_json if r["reason"]] == [by_name["broken.jpg"]["reason"]]
