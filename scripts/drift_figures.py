"""The drift figures of docs/sites.md: whole sets against the validation reference, and resampled batches.

Scores the model's validation split, ../shared/data/ph2 and skin-cancer-mvb/test (or reads them from
--scores, written by an earlier run), then prints each set's drift check against the validation
reference, and how often batches of --batch images drawn from each set are warned.

    .venv/bin/python scripts/drift_figures.py [--model default] [--scores scores.json] [--batch 50]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def score_sets(model: str) -> dict[str, list[float]]:
    from skinscreen.models.classifier import load_classifier
    from skinscreen.models.screening import score_files
    from skinscreen.models.training import dataset
    from skinscreen.models.training.reference import validation_paths

    classifier = load_classifier(model, backend="onnx")
    sets = {
        "validation": validation_paths(classifier.card.data, data=None),
        "ph2": dataset.list_labelled(DATA / "ph2").paths,
        "mvb-test": dataset.list_labelled(DATA / "skin-cancer-mvb" / "test").paths,
    }
    out = {}
    for name, paths in sets.items():
        out[name] = [
            r.probability for r in score_files(paths, classifier=classifier) if r.probability is not None
        ]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--scores", type=Path, help="read the scores here if it exists, else write them here")
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--draws", type=int, default=500)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from skinscreen.models.registry import read_card, resolve_model_dir
    from skinscreen.sites.drift import Reference, check_batch

    if args.scores and args.scores.exists():
        scores = json.loads(args.scores.read_text())
    else:
        scores = score_sets(args.model)
        if args.scores:
            args.scores.write_text(json.dumps(scores))
    threshold = read_card(resolve_model_dir(args.model)).threshold
    reference = Reference.from_scores(
        np.asarray(scores["validation"]), source="validation", threshold=threshold
    )
    print(
        f"reference: {reference.n} validation scores, flag rate {reference.flag_rate:.3f} at {threshold:.4f}"
    )
    rng = np.random.default_rng(0)
    for name, values in scores.items():
        whole = np.asarray(values)
        check = check_batch(whole, whole >= threshold, reference=reference, threshold=threshold)
        warned = 0
        for _ in range(args.draws):
            batch = rng.choice(whole, args.batch, replace=False)
            warned += (
                check_batch(batch, batch >= threshold, reference=reference, threshold=threshold).warning
                is not None
            )
        print(
            f"{name}: all {len(whole)}: PSI {check.psi:.3f} (limit {check.psi_limit:.2f}), flag rate "
            f"{check.flagged_rate:.3f} (range {check.expected_range[0]:.3f}-{check.expected_range[1]:.3f}); "
            f"batches of {args.batch} warned in {warned / args.draws:.1%} of {args.draws} draws"
        )


if __name__ == "__main__":
    main()
