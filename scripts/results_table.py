#!/usr/bin/env python
"""Print the README's results table from `skinscreen evaluate` outputs (metrics.json folders).

Each --row names a model and gives its test-split evaluation, optionally followed by its PH2
evaluation (another hospital; reported only). Several test folders joined by commas make one
row of mean ± sd over seeds.

    .venv/bin/python scripts/results_table.py \\
        --row "shipped model (first version)" out/old-test out/old-ph2 \\
        --row "shipped model" out/new-test out/new-ph2
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

# Table 2 of the paper: accuracy 78.03 %, malignant precision 93.0 %, recall 56.0 %, F1 70.0 %.
PAPER = {"accuracy": 0.7803, "malignant_recall": 0.56, "malignant_precision": 0.93}
KEYS = {"auc": "roc_auc", "sens": "sensitivity", "spec": "specificity", "acc": "accuracy"}


def figures(metrics_dir: Path) -> dict[str, Any]:
    m: dict[str, Any] = json.loads((metrics_dir / "metrics.json").read_text())["all"]
    at_t = m["at_threshold"]
    ci = m.get("intervals_95") or {}
    return {
        "acc": at_t["accuracy"],
        "auc": m["roc_auc"],
        "sens": at_t["sensitivity"],
        "spec": at_t["specificity"],
        "acc@0.5": m["at_0.5"]["accuracy"],
        "ci": {k: ci.get(v) for k, v in KEYS.items()} if ci.get("computed") else {},
    }


def cell(runs: list[dict[str, Any]], key: str) -> str:
    values = [r[key] for r in runs]
    if len(values) > 1:
        return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"
    interval = runs[0]["ci"].get(key)
    return f"{values[0]:.3f}" + (f" ({interval[0]:.3f}-{interval[1]:.3f})" if interval else "")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--row", nargs="+", action="append", required=True, metavar="NAME TEST [PH2]")
    args = parser.parse_args()
    header = [
        "model",
        "test ROC AUC",
        "test accuracy @threshold",
        "test sensitivity @threshold",
        "test specificity @threshold",
        "PH2 ROC AUC",
        "PH2 sensitivity @threshold",
        "PH2 specificity @threshold",
    ]
    print("| " + " | ".join(header) + " |")
    print("|" + " --- |" * len(header))
    print(
        f"| paper (reported, Table 2) | - | {PAPER['accuracy']:.3f} (at 0.5) "
        f"| {PAPER['malignant_recall']:.2f} | - | - | - | - |"
    )
    for name, test, *rest in args.row:
        runs = [figures(Path(d)) for d in test.split(",")]
        cells = [cell(runs, k) for k in ("auc", "acc", "sens", "spec")]
        if rest:
            ph2 = [figures(Path(d)) for d in rest[0].split(",")]
            cells += [cell(ph2, k) for k in ("auc", "sens", "spec")]
        else:
            cells += ["not measured"] * 3
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
