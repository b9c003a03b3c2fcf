"""`skinscreen evaluate`: score a labelled folder and write metrics, predictions, a report and plots.

Every readable file under DATA_DIR/benign and DATA_DIR/malignant is scored with the model's
own preprocessing; unreadable files are listed, never scored. The metrics are computed twice:
on all scored images, and without the images that have a near-duplicate in the training folder
(train/test leakage inflates a test score; the dataset's SOURCE.md lists 8 such test images).
"""

from __future__ import annotations

import csv
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from skinscreen.models.classifier import Scorer
from skinscreen.models.screening import score_files
from skinscreen.models.training import dataset, metrics, plots
from skinscreen.models.training.intervals import bootstrap_intervals, format_interval

logger = logging.getLogger(__name__)

FIGURES = {
    "confusion_matrix.png": "Confusion matrix at the model threshold",
    "roc_curve.png": "ROC curve with the operating points",
    "reliability.png": "Reliability (calibration) curve",
}


@dataclass(frozen=True)
class Scored:
    """The readable files of a folder with their labels, probabilities and flags, and the unreadable ones."""

    paths: list[Path]
    labels: np.ndarray
    probs: np.ndarray
    flagged: np.ndarray
    unreadable: list[dict[str, str]]


def score_labelled(
    files: dataset.LabelledFiles, *, classifier: Scorer, root: Path, batch_size: int, progress: bool
) -> Scored:
    """Score through the shared scoring path; a file that cannot be decoded is recorded, not scored."""
    bar = tqdm(total=len(files.paths), desc="scoring", unit="img", file=sys.stderr, disable=not progress)
    with bar:
        results = score_files(
            files.paths,
            classifier=classifier,
            batch_size=max(1, batch_size),
            on_batch=lambda b: bar.update(len(b)),
        )
    keep = [i for i, r in enumerate(results) if r.probability is not None]
    unreadable = [
        {"path": r.path.relative_to(root).as_posix(), "reason": r.reason or "unreadable"}
        for r in results
        if r.probability is None
    ]
    return Scored(
        paths=[results[i].path for i in keep],
        labels=files.labels[keep].astype(np.int64),
        probs=np.asarray([results[i].probability for i in keep], dtype=np.float64),
        flagged=np.asarray([bool(results[i].flagged) for i in keep], dtype=bool),
        unreadable=unreadable,
    )


def _fingerprint_all(paths: Sequence[Path], *, bar: tqdm[Any]) -> tuple[list[int], np.ndarray]:
    """Fingerprints of the files Pillow can open, with their indices into `paths`."""
    kept: list[int] = []
    rows: list[np.ndarray] = []
    for i, path in enumerate(paths):
        bar.update()
        try:
            rows.append(dataset.fingerprints([path])[0])
        except (OSError, ValueError):  # unreadable, or a format Pillow cannot open (DICOM)
            continue
        kept.append(i)
    return kept, np.stack(rows) if rows else np.zeros((0, 1024), dtype=np.float32)


def find_near_duplicates(
    paths: Sequence[Path], *, train_dir: Path, progress: bool
) -> tuple[dict[int, list[Path]], list[int]]:
    """Map index in `paths` -> the training images it nearly duplicates, and the unchecked indices."""
    train_paths = sorted(
        p for p in train_dir.rglob("*") if p.is_file() and p.suffix.lower() in dataset.IMAGE_SUFFIXES
    )
    # One bar for the whole check: the training set is read only to compare against.
    total = len(paths) + len(train_paths)
    bar = tqdm(total=total, desc="near-duplicate check", unit="img", file=sys.stderr, disable=not progress)
    with bar:
        kept, prints = _fingerprint_all(paths, bar=bar)
        train_kept, train_prints = _fingerprint_all(train_paths, bar=bar)
    matches: dict[int, list[Path]] = {}
    if len(kept) and len(train_kept):
        for i, j in dataset.near_duplicate_pairs(prints, train_prints):
            matches.setdefault(kept[i], []).append(train_paths[train_kept[j]])
    unchecked = sorted(set(range(len(paths))) - set(kept))
    return matches, unchecked


def _without_near_duplicates(
    scored: Scored, *, root: Path, train_dir: Path | None, threshold: float, progress: bool
) -> dict[str, Any]:
    if train_dir is None:
        return {"computed": False, "reason": "no training folder was given, so leakage was not checked"}
    matches, unchecked = find_near_duplicates(scored.paths, train_dir=train_dir, progress=progress)
    keep = np.asarray([i not in matches for i in range(len(scored.paths))], dtype=bool)
    return {
        "computed": True,
        "train_dir": str(train_dir),
        "excluded": [scored.paths[i].relative_to(root).as_posix() for i in sorted(matches)],
        "pairs": [
            {
                "path": scored.paths[i].relative_to(root).as_posix(),
                "train_path": t.relative_to(train_dir).as_posix(),
            }
            for i in sorted(matches)
            for t in matches[i]
        ],
        "not_checked": [scored.paths[i].relative_to(root).as_posix() for i in unchecked],
        **metrics.screening_metrics(scored.labels[keep], scored.probs[keep], threshold=threshold),
    }


def write_predictions(scored: Scored, *, root: Path, path: Path) -> None:
    """predictions.csv: one row per scored file (path relative to the data folder), flagged as scored."""
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label", "probability", "flagged"])
        for file, label, prob, flagged in zip(
            scored.paths, scored.labels.tolist(), scored.probs.tolist(), scored.flagged.tolist(), strict=True
        ):
            name = metrics.CLASS_NAMES[label]
            writer.writerow([file.relative_to(root).as_posix(), name, repr(prob), int(flagged)])


def write_plots(scored: Scored, *, threshold: float, summary: dict[str, Any], out: Path) -> None:
    """confusion_matrix.png, roc_curve.png and reliability.png for all scored images."""
    y, p = scored.labels, scored.probs
    plots.plot_confusion_matrix(
        metrics.confusion_matrix(y, p, threshold=threshold),
        path=out / "confusion_matrix.png",
        threshold=threshold,
    )
    fpr, tpr, _ = metrics.roc_curve(y, p)
    points = []
    for key, name in (("at_threshold", f"threshold {threshold:.3f}"), ("at_0.5", "threshold 0.5")):
        point = summary[key]
        if point["sensitivity"] is not None and point["specificity"] is not None:
            points.append((name, 1.0 - point["specificity"], point["sensitivity"]))
    plots.plot_roc_curve(
        fpr, tpr, path=out / "roc_curve.png", auc=summary["roc_auc"], operating_points=points
    )
    plots.plot_reliability(summary["reliability"], path=out / "reliability.png", brier=summary["brier"])


def _number(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _section(summary: dict[str, Any]) -> list[str]:
    at_t, at_half = summary["at_threshold"], summary["at_0.5"]
    lines = [
        f"{summary['n']} images ({summary['n_benign']} benign, {summary['n_malignant']} malignant). "
        f"ROC AUC {_number(summary['roc_auc'])}, Brier score {_number(summary['brier'])}.",
        "",
        f"| | at the model threshold ({at_t['threshold']:.3f}) | at 0.5 |",
        "|---|---:|---:|",
    ]
    ci = summary.get("intervals_95") or {}
    if ci.get("computed"):
        lines[0] += (
            f" 95 % intervals ({ci['method']}, {ci['resamples']} resamples): ROC AUC "
            f"{format_interval(summary['roc_auc'], ci['roc_auc'])}; at the model threshold sensitivity "
            f"{format_interval(at_t['sensitivity'], ci['sensitivity'])}, specificity "
            f"{format_interval(at_t['specificity'], ci['specificity'])}, accuracy "
            f"{format_interval(at_t['accuracy'], ci['accuracy'])}."
        )
    for key, label in (
        ("accuracy", "accuracy"),
        ("sensitivity", "sensitivity (malignant recall)"),
        ("specificity", "specificity (benign recall)"),
    ):
        lines.append(f"| {label} | {_number(at_t[key])} | {_number(at_half[key])} |")
    cells = [" / ".join(str(p["confusion"][k]) for k in ("tn", "fp", "fn", "tp")) for p in (at_t, at_half)]
    lines.append(f"| TN / FP / FN / TP | {cells[0]} | {cells[1]} |")
    for point, title in ((at_t, f"the model threshold ({at_t['threshold']:.3f})"), (at_half, "0.5")):
        lines += ["", f"Classification report at {title}:", ""]
        lines += ["| | precision | recall | f1-score | support |", "|---|---:|---:|---:|---:|"]
        for row in metrics.REPORT_ROWS:
            r = point["per_class"][row]
            scores = " | ".join(f"{r[k]:.2f}" for k in ("precision", "recall", "f1-score"))
            lines.append(f"| {row} | {scores} | {int(r['support'])} |")
        lines.append(f"| accuracy | | | {_number(point['accuracy'], 2)} | {summary['n']} |")
    return lines


def render_report(result: dict[str, Any]) -> str:
    """report.md: the paper's Table 2 layout for all images and for the leakage-free subset."""
    model, subset = result["model"], result["without_near_duplicates"]
    lines = [
        f"# Evaluation of model {model['version']}",
        "",
        f"Data: `{result['data_dir']}`. Backend: {model['backend']}. "
        f"A case is flagged when its probability is >= the threshold ({model['threshold']:.4f}).",
        "",
        "## All scored images",
        "",
        *_section(result["all"]),
        "",
        "## Without images that have a near-duplicate in the training folder",
        "",
    ]
    if subset["computed"]:
        excluded = ", ".join(f"`{p}`" for p in subset["excluded"]) or "none"
        lines += [f"Training folder: `{subset['train_dir']}`. Excluded: {excluded}.", ""]
        if subset["not_checked"]:
            lines += [f"Could not be checked (not fingerprinted): {len(subset['not_checked'])} images.", ""]
        lines += _section(subset)
    else:
        lines.append(f"Not computed: {subset['reason']}.")
    lines += ["", "## Figures", ""]
    for name, title in FIGURES.items():
        lines += [f"### [{title}]({name})", "", f"![{title}]({name})", ""]
    lines += ["## Unreadable files", ""]
    lines += [f"- `{u['path']}`: {u['reason']}" for u in result["unreadable"]] or ["None."]
    return "\n".join(lines) + "\n"


def evaluate(
    data_dir: Path,
    *,
    classifier: Scorer,
    out: Path,
    train_dir: Path | None,
    batch_size: int = 32,
    progress: bool = True,
) -> dict[str, Any]:
    """Score DATA_DIR/{benign,malignant}; write metrics.json, predictions.csv, report.md and PNGs to `out`."""
    files = dataset.list_labelled(data_dir)
    out.mkdir(parents=True, exist_ok=True)
    threshold = classifier.threshold
    scored = score_labelled(
        files, classifier=classifier, root=data_dir, batch_size=batch_size, progress=progress
    )
    summary = metrics.screening_metrics(scored.labels, scored.probs, threshold=threshold)
    summary["intervals_95"] = bootstrap_intervals(scored.labels, scored.probs, threshold=threshold)
    result: dict[str, Any] = {
        "model": {
            "version": classifier.version,
            "threshold": threshold,
            "backend": classifier.backend,
            "input_size": classifier.input_size,
        },
        "data_dir": str(data_dir),
        "all": summary,
        "without_near_duplicates": _without_near_duplicates(
            scored, root=data_dir, train_dir=train_dir, threshold=threshold, progress=progress
        ),
        "unreadable": scored.unreadable,
    }
    (out / "metrics.json").write_text(json.dumps(result, indent=2, allow_nan=False) + "\n")
    write_predictions(scored, root=data_dir, path=out / "predictions.csv")
    write_plots(scored, threshold=threshold, summary=summary, out=out)
    (out / "report.md").write_text(render_report(result))
    logger.info(
        "evaluated %s: %d scored, %d unreadable, accuracy %s, AUC %s -> %s",
        data_dir,
        summary["n"],
        len(scored.unreadable),
        _number(summary["at_threshold"]["accuracy"]),
        _number(summary["roc_auc"]),
        out,
    )
    return result
