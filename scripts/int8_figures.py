"""Put the int8 copy's test figures into a model card: ROC AUC against the float model's, the
largest probability difference, and its speed-up measured side by side on the same pixels.

    .venv/bin/python scripts/int8_figures.py MODEL_DIR ../shared/data/skin-cancer-mvb/test
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from skinscreen.models.classifier import load_classifier
from skinscreen.models.training.card import render
from skinscreen.models.training.dataset import list_labelled, load_pixels
from skinscreen.models.training.metrics import roc_auc


def throughput(classifier: object, pixels: np.ndarray, batch: int = 32) -> float:
    predict = classifier.predict  # type: ignore[attr-defined]
    predict(pixels[:batch])  # warm-up
    start = time.perf_counter()
    for i in range(0, len(pixels), batch):
        predict(pixels[i : i + batch])
    return len(pixels) / (time.perf_counter() - start)


def main() -> None:
    model_dir, test_dir = Path(sys.argv[1]), Path(sys.argv[2])
    files = list_labelled(test_dir)
    fp32 = load_classifier(model_dir, backend="onnx")
    int8 = load_classifier(model_dir, backend="onnx-int8")
    pixels = load_pixels(files.paths, size=fp32.input_size)
    p32 = np.concatenate([fp32.predict(pixels[i : i + 64]) for i in range(0, len(pixels), 64)])
    p8 = np.concatenate([int8.predict(pixels[i : i + 64]) for i in range(0, len(pixels), 64)])
    sample = pixels[:256]
    speeds = {"float": throughput(fp32, sample), "int8": throughput(int8, sample)}
    figures = {
        "roc_auc": roc_auc(files.labels, p8),
        "float_roc_auc": roc_auc(files.labels, p32),
        "max_abs_diff": float(np.abs(p8 - p32).max()),
        "speedup": speeds["int8"] / speeds["float"],
        "images_per_second": speeds,
    }
    card = json.loads((model_dir / "card.json").read_text())
    card["int8_test"] = figures
    (model_dir / "card.json").write_text(json.dumps(card, indent=1))
    (model_dir / "MODEL_CARD.md").write_text(render(card))
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
