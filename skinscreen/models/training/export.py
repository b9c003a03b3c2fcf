"""`skinscreen export`: a training run -> a deployable model directory (Keras, ONNX, card)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from skinscreen.checksum import sha256_file
from skinscreen.errors import ModelError
from skinscreen.models.classifier import Scorer

ONNX_TOLERANCE = 1e-4
VIEWS = {"none": 1, "flip4": 4, "dihedral8": 8}  # network passes per image for each test-time mode


def export_run(run_dir: Path, *, out: Path, name: str | None = None) -> dict[str, Any]:
    """Write model.keras (no optimizer state), model.onnx and card.json into `out`."""
    from skinscreen.models.layers import load_keras_model

    run_path = run_dir / "run.json"
    if not run_path.exists() or not (run_dir / "model.keras").exists():
        raise ModelError(f"{run_dir} is not a training run (no run.json or model.keras)")
    run = json.loads(run_path.read_text())
    size = int(run["input_size"])
    out.mkdir(parents=True, exist_ok=True)
    model = load_keras_model(run_dir / "model.keras")
    model(np.zeros((1, size, size, 3), dtype="float32"))  # the ONNX exporter needs a called model
    model.save(out / "model.keras")
    model.export(str(out / "model.onnx"), format="onnx", verbose=False)
    onnx_sha = sha256_file(out / "model.onnx")
    version = name or f"mnv2-{run['recipe']['name']}-s{run['seed']}-{onnx_sha[:8]}"
    card = {
        "version": version,
        "threshold": run["threshold"],
        "threshold_rule": run["threshold_rule"],
        "tta": run.get("tta", "none"),
        "views": VIEWS[run.get("tta", "none")],
        "input_size": size,
        "preprocessing": {
            "input": "RGB, resized to input_size x input_size with Pillow bilinear, float32 in 0..255",
            "scaling": "inside the model: "
            + ("x/255" if run["recipe"]["rescale"] == "unit" else "x/127.5 - 1"),
            "reader": "skinscreen.images.read_image (EXIF orientation applied, DICOM YBR to RGB)",
            "test_time_views": run.get("tta", "none"),
            "colour_constancy": (
                f"Shades of Gray, p={run['recipe']['colour_constancy']:g}, the network's first layer"
                if run["recipe"].get("colour_constancy")
                else "none"
            ),
        },
        "architecture": f"MobileNetV2 alpha {run['alpha']}, GlobalAveragePooling, Dropout, Dense(1, sigmoid)",
        "files": {
            "model.onnx": {"sha256": onnx_sha, "bytes": (out / "model.onnx").stat().st_size},
            "model.keras": {
                "sha256": sha256_file(out / "model.keras"),
                "bytes": (out / "model.keras").stat().st_size,
            },
        },
        "training": {
            k: run[k]
            for k in (
                "recipe",
                "seed",
                "epochs",
                "train_data_sha256",
                "backbone_weights",
                "backbone_weights_sha256",
                "train_images",
                "threshold_note",
                "split_seed",
                "tta",
                "validation_images",
                "seconds",
                "versions",
                "validation",
                "validation_by_source",
                "images_by_source",
                "extra_train_dirs",
                "init_from",
                "teacher",
                "limit_per_class",
            )
            if k in run
        },
        "intended_use": (
            "A screening aid that orders dermoscopy images for review by a dermatologist. "
            "It is not a diagnosis and must not be used without a reviewer."
        ),
    }
    for extra in ("history.json", "fig5_accuracy.png", "fig6_loss.png"):
        if (run_dir / extra).exists():
            shutil.copy(run_dir / extra, out / extra)
    (out / "card.json").write_text(json.dumps(card, indent=1))
    return card


def max_abs_difference(a: Scorer, b: Scorer, pixels: np.ndarray, *, chunk: int = 64) -> float:
    """Largest absolute difference between two classifiers' probabilities on the same pixels."""
    return max(
        float(np.abs(a.predict(pixels[i : i + chunk]) - b.predict(pixels[i : i + chunk])).max())
        for i in range(0, len(pixels), chunk)
    )
