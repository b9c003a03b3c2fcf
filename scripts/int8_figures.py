"""Put the int8 copy's test figures into a model card: ROC AUC against the float model's, the
largest probability difference, and its speed-up measured side by side on the same pixels.

    .venv/bin/python scripts/int8_figures.py MODEL_DIR ../shared/data/skin-cancer-mvb/test
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from skinscreen.bench import raw_runtime
from skinscreen.models.classifier import load_classifier
from skinscreen.models.training.card import render
from skinscreen.models.training.dataset import list_labelled, load_pixels
from skinscreen.models.training.metrics import roc_auc


def main() -> None:
    model_dir, test_dir = Path(sys.argv[1]), Path(sys.argv[2])
    files = list_labelled(test_dir)
    fp32 = load_classifier(model_dir, backend="onnx")
    int8 = load_classifier(model_dir, backend="onnx-int8")
    pixels = load_pixels(files.paths, size=fp32.input_size)
    p32 = np.concatenate([fp32.predict(pixels[i : i + 64]) for i in range(0, len(pixels), 64)])
    p8 = np.concatenate([int8.predict(pixels[i : i + 64]) for i in range(0, len(pixels), 64)])
    sample = pixels[:256]
    speeds = {
        name: raw_runtime(clf, sample, batch_size=32).per_second
        for name, clf in (("float", fp32), ("int8", int8))
    }
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
