#!/usr/bin/env python
"""Print the README's results table from `skinscreen evaluate` outputs (metrics.json files).

    .venv/bin/python scripts/results_table.py --paper RUN/test-evaluation \\
        --default RUN0/test-evaluation RUN1/test-evaluation RUN2/test-evaluation --shipped EVAL_DIR
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

# Table 2 of the paper: accuracy 78.03 %, malignant precision 93.0 %, recall 56.0 %, F1 70.0 %.
PAPER = {"accuracy": 0.7803, "malignant_recall": 0.56, "malignant_precision": 0.93}


def figures(metrics_dir: Path) -> dict[str, float]:
    m: dict[str, Any] = json.loads((metrics_dir / "metrics.json").read_text())["all"]
    at_t, at_half = m["at_threshold"], m["at_0.5"]
    clean = json.loads((metrics_dir / "metrics.json").read_text())["without_near_duplicates"]
    return {
        "accuracy@0.5": at_half["accuracy"],
        "accuracy@t": at_t["accuracy"],
        "auc": m["roc_auc"],
        "sens@t": at_t["sensitivity"],
        "spec@t": at_t["specificity"],
        "recall@0.5": at_half["sensitivity"],
        "auc_clean": clean.get("roc_auc", float("nan")),
        "accuracy@t_clean": clean.get("at_threshold", {}).get("accuracy", float("nan")),
    }


COLUMNS = [
    "accuracy@0.5",
    "accuracy@t",
    "auc",
    "sens@t",
    "spec@t",
    "recall@0.5",
    "accuracy@t_clean",
    "auc_clean",
]


def row(name: str, runs: list[dict[str, float]]) -> str:
    cells = []
    for key in COLUMNS:
        values = [r[key] for r in runs]
        if len(values) > 1:
            cells.append(f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}")
        else:
            cells.append(f"{values[0]:.3f}")
    return f"| {name} | " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--paper", type=Path, required=True)
    parser.add_argument("--default", type=Path, nargs="+", required=True)
    parser.add_argument("--shipped", type=Path, required=True)
    args = parser.parse_args()
    header = [
        "run",
        "accuracy @0.5",
        "accuracy @threshold",
        "ROC AUC",
        "sensitivity @threshold",
        "specificity @threshold",
        "malignant recall @0.5",
        "accuracy @threshold, no near-dups",
        "ROC AUC, no near-dups",
    ]
    print("| " + " | ".join(header) + " |")
    print("|" + " --- |" * len(header))
    print(
        f"| paper (reported, Table 2) | {PAPER['accuracy']:.3f} | - | - | - | - "
        f"| {PAPER['malignant_recall']:.2f} | - | - |"
    )
    print(row("paper recipe, ours (seed 0)", [figures(args.paper)]))
    print(row(f"default recipe, {len(args.default)} seeds (mean ± sd)", [figures(d) for d in args.default]))
    print(row("shipped model", [figures(args.shipped)]))


if __name__ == "__main__":
    main()
