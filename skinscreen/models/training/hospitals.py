"""`skinscreen evaluate-hospitals`: one row per hospital, the table the README reports.

Each set is a labelled folder (`benign/`, `malignant/`) scored through the shared scoring path
with the threshold in force. A row gives n, ROC AUC with its 95 % interval, and sensitivity and
specificity at the threshold with theirs (stratified bootstrap, as `evaluate`). Where the set's
MANIFEST.csv names a diagnosis (`dx` in the HAM10000 sets, `diagnosis` in PH2), sensitivity is
also given per diagnosis group: melanoma, bcc/akiec (basal cell carcinoma, actinic keratosis /
intraepithelial carcinoma) and other malignant lesions. The HAM10000 sets' malignant class is
mostly bcc/akiec, skin-cancer-mvb's mostly melanoma, so a pooled sensitivity hides which kind of
cancer a hospital's figure is about.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skinscreen.models.classifier import Scorer
from skinscreen.models.training import dataset, metrics
from skinscreen.models.training.evaluate import Scored, score_labelled, write_predictions
from skinscreen.models.training.featurecache import SPLITS
from skinscreen.models.training.intervals import bootstrap_intervals, format_interval

logger = logging.getLogger(__name__)

GROUPS = ("melanoma", "bcc/akiec", "other")
_GROUP_OF = {"mel": "melanoma", "melanoma": "melanoma", "bcc": "bcc/akiec", "akiec": "bcc/akiec"}


def diagnosis_group(diagnosis: str) -> str:
    """melanoma, bcc/akiec or other, from a HAM10000 `dx` code or a PH2 diagnosis."""
    return _GROUP_OF.get(diagnosis.strip().lower(), "other")


def read_diagnoses(folder: Path) -> dict[str, str] | None:
    """Path relative to `folder` -> diagnosis, from folder/MANIFEST.csv; None without one."""
    manifest = folder / "MANIFEST.csv"
    if not manifest.is_file():
        return None
    with manifest.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return None
    path_key = next((k for k in ("path", "file") if k in rows[0]), None)
    dx_key = next((k for k in ("dx", "diagnosis") if k in rows[0]), None)
    if path_key is None or dx_key is None:
        return None
    return {row[path_key]: row[dx_key] for row in rows}


def hospital_name(folder: Path) -> str:
    """The set's folder name, with its parent's for a split (`skin-cancer-mvb/test`)."""
    folder = folder.resolve()
    return f"{folder.parent.name}/{folder.name}" if folder.name in SPLITS else folder.name


def group_sensitivity(
    scored: Scored, *, root: Path, diagnoses: dict[str, str] | None
) -> dict[str, dict[str, Any]] | None:
    """Per diagnosis group of the malignant images: n, flagged, sensitivity (None when no manifest).

    An image missing from the manifest counts in `unlisted`, so nothing is silently dropped.
    """
    if diagnoses is None:
        return None
    counts = {g: [0, 0] for g in (*GROUPS, "unlisted")}
    for path, label, flagged in zip(
        scored.paths, scored.labels.tolist(), scored.flagged.tolist(), strict=True
    ):
        if label != 1:
            continue
        dx = diagnoses.get(path.relative_to(root).as_posix())
        group = "unlisted" if dx is None else diagnosis_group(dx)
        counts[group][0] += 1
        counts[group][1] += int(flagged)
    return {g: {"n": n, "flagged": k, "sensitivity": k / n} for g, (n, k) in counts.items() if n}


@dataclass(frozen=True)
class HospitalSet:
    """A labelled folder to score, and whether the model was trained on that hospital."""

    folder: Path
    trained_on: bool = False


def hospital_row(
    scored: Scored, *, name: str, root: Path, threshold: float, trained_on: bool
) -> dict[str, Any]:
    """One hospital's figures at `threshold` (the flags as scored), with 95 % intervals."""
    summary = metrics.screening_metrics(scored.labels, scored.probs, threshold=threshold)
    at = summary["at_threshold"]
    return {
        "hospital": name,
        "folder": str(root),
        "trained_on": trained_on,
        "n": summary["n"],
        "n_benign": summary["n_benign"],
        "n_malignant": summary["n_malignant"],
        "roc_auc": summary["roc_auc"],
        "sensitivity": at["sensitivity"],
        "specificity": at["specificity"],
        "intervals_95": bootstrap_intervals(scored.labels, scored.probs, threshold=threshold),
        "sensitivity_by_group": group_sensitivity(scored, root=root, diagnoses=read_diagnoses(root)),
        "unreadable": len(scored.unreadable),
        "unreadable_files": scored.unreadable,
    }


def evaluate_hospitals(
    sets: Sequence[HospitalSet],
    *,
    classifier: Scorer,
    out: Path | None = None,
    batch_size: int = 32,
    progress: bool = True,
) -> dict[str, Any]:
    """Score every set; return (and write to `out`, if given) one row per hospital."""
    threshold = classifier.threshold
    rows = []
    for item in sets:
        files = dataset.list_labelled(item.folder)
        scored = score_labelled(
            files, classifier=classifier, root=item.folder, batch_size=batch_size, progress=progress
        )
        name = hospital_name(item.folder)
        rows.append(
            hospital_row(scored, name=name, root=item.folder, threshold=threshold, trained_on=item.trained_on)
        )
        logger.info(
            "%s: %d scored, %d unreadable, AUC %s",
            name,
            len(scored.paths),
            len(scored.unreadable),
            rows[-1]["roc_auc"],
        )
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            write_predictions(
                scored, root=item.folder, path=out / f"{name.replace('/', '-')}.predictions.csv"
            )
    result = {
        "model": {"version": classifier.version, "threshold": threshold, "backend": classifier.backend},
        "hospitals": rows,
    }
    if out is not None:
        (out / "hospitals.json").write_text(json.dumps(result, indent=2, allow_nan=False) + "\n")
        (out / "hospitals.md").write_text(render_table(result))
    return result


def _group_cell(row: dict[str, Any], group: str) -> str:
    figures = (row["sensitivity_by_group"] or {}).get(group)
    if not figures:
        return ""
    return f"{figures['sensitivity']:.2f} ({figures['flagged']}/{figures['n']})"


def render_table(result: dict[str, Any]) -> str:
    """The per-hospital table in Markdown, intervals in brackets, one row per hospital."""
    model = result["model"]
    lines = [
        f"Model `{model['version']}` ({model['backend']}), threshold {model['threshold']:.4f}; "
        "95 % intervals: stratified bootstrap.",
        "",
        "| hospital | trained on | n (benign/malignant) | ROC AUC | sensitivity | specificity "
        "| sens. melanoma | sens. bcc/akiec | sens. other |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in result["hospitals"]:
        ci = row["intervals_95"] if row["intervals_95"].get("computed") else {}
        cells = [
            row["hospital"],
            "yes" if row["trained_on"] else "no",
            f"{row['n']} ({row['n_benign']}/{row['n_malignant']})",
            format_interval(row["roc_auc"], ci.get("roc_auc")),
            format_interval(row["sensitivity"], ci.get("sensitivity")),
            format_interval(row["specificity"], ci.get("specificity")),
            *(_group_cell(row, g) for g in GROUPS),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    skipped = [f"{r['hospital']} {r['unreadable']}" for r in result["hospitals"] if r["unreadable"]]
    if skipped:  # never silently: a file that could not be read is not in n
        lines += [
            "",
            "Unreadable files, not scored (with --out, each is listed with its reason in hospitals.json): "
            + ", ".join(skipped)
            + ".",
        ]
    return "\n".join(lines) + "\n"
