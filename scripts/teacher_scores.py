"""Precompute teacher scores for distillation (`skinscreen train --teacher FILE`).

Scores every image of DATA_DIR/train and of each --extra folder with each teacher model under
every dihedral view, and writes one .npz: `names` (the DATA_DIR- or NAME-relative paths that
train's split.json uses), `labels`, and per teacher an (N, 8) array of probabilities. Teachers are
compared on the validation images only (`--report` prints per-source validation ROC AUC of each
teacher and of their mean, on the split `train` makes with split seed 0), which is how the teacher
is chosen; the test split and PH2 are never read here.

    python scripts/teacher_scores.py ../shared/data/skin-cancer-mvb \
        --extra ../shared/data/skin-cancer-bcn \
        --teacher eight=out/eightview-model --teacher shipped=skinscreen/models/shipped/default \
        --out out/teacher-scores.npz
    python scripts/teacher_scores.py ../shared/data/skin-cancer-mvb \
        --extra ../shared/data/skin-cancer-bcn --report out/teacher-scores.npz
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np


def score(data_dir: Path, extra: list[Path], teachers: dict[str, Path], out: Path) -> None:
    from skinscreen.models.layers import load_keras_model
    from skinscreen.models.preprocess import tta_views
    from skinscreen.models.training import dataset
    from skinscreen.models.training.train import relative_name, sources_of

    sources, prefixes = sources_of(data_dir, tuple(extra))
    paths: list[Path] = []
    labels: list[int] = []
    for root in sources:
        part = dataset.list_labelled(root)
        paths += part.paths
        labels += part.labels.tolist()
    names = [relative_name(path, prefixes) for path in paths]
    models = {name: load_keras_model(folder / "model.keras") for name, folder in teachers.items()}
    size = int(next(iter(models.values())).input_shape[1])
    scores = {name: np.empty((len(paths), 8), dtype=np.float32) for name in models}
    started = time.monotonic()
    chunk = 64
    for start in range(0, len(paths), chunk):
        pixels = dataset.load_pixels(paths[start : start + chunk], size=size).astype("float32")
        views = tta_views(pixels, "dihedral8")
        for name, model in models.items():
            probs = model.predict(views, batch_size=64, verbose=0).ravel()
            scores[name][start : start + len(pixels)] = probs.reshape(8, -1).T
        done = start + len(pixels)
        rate = done / (time.monotonic() - started)
        left = (len(paths) - done) / rate / 60
        print(f"{done}/{len(paths)} images, {rate:.1f}/s, {left:.1f} min left", flush=True)
    np.savez_compressed(out, names=np.asarray(names), labels=np.asarray(labels), **scores)
    print(f"wrote {out}")


def report(npz: Path, data_dir: Path, extra: list[Path]) -> None:
    from skinscreen.models.training.distill import teacher_names
    from skinscreen.models.training.metrics import roc_auc
    from skinscreen.models.training.train import sources_of, split_sources

    data = np.load(npz)
    names = [str(n) for n in data["names"]]
    validation = set(split_sources(*sources_of(data_dir, tuple(extra))).split["validation"])
    rows = np.asarray([n in validation for n in names])
    # split.json names the main set's images train/..., the others NAME/...
    source = np.asarray([data_dir.name if n.startswith("train/") else n.split("/")[0] for n in names])
    y = data["labels"].astype(bool)
    teachers = teacher_names(data)
    candidates = {f"{t} (1 view)": data[t][:, 0] for t in teachers}
    candidates |= {f"{t} (8 views)": data[t].mean(axis=1) for t in teachers}
    if len(teachers) > 1:
        candidates["mean of all (8 views)"] = np.mean([data[t].mean(axis=1) for t in teachers], axis=0)
    print(f"validation images: {rows.sum()} of {len(names)}")
    for label, probs in candidates.items():
        aucs = {}
        for s in np.unique(source[rows]):
            keep = rows & (source == s)
            aucs[s] = roc_auc(y[keep], probs[keep])
        figures = "  ".join(f"{s} {a:.4f}" for s, a in aucs.items())
        print(f"{label:32s} {figures}  mean {np.mean(list(aucs.values())):.4f}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("data_dir", type=Path, nargs="?")
    parser.add_argument("--extra", type=Path, action="append", default=[])
    parser.add_argument("--teacher", action="append", default=[], help="NAME=MODEL_DIR")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--report", type=Path, help="an .npz written before: print validation AUCs")
    args = parser.parse_args()
    if args.report:
        report(args.report, args.data_dir, args.extra)
        return 0
    teachers = dict(t.split("=", 1) for t in args.teacher)
    score(args.data_dir, args.extra, {k: Path(v) for k, v in teachers.items()}, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
