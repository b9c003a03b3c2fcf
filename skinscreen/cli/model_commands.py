"""Model commands: predict and evaluate (training, export and quantization are in training_commands)."""

from __future__ import annotations

from pathlib import Path

import click

from skinscreen.cli.base import write_rows
from skinscreen.config import Settings

MODEL = click.option(
    "--model", help="Model name or directory (default: SKINSCREEN_MODEL, else the shipped model)."
)
BACKEND = click.option(
    "--backend", type=click.Choice(["auto", "onnx", "onnx-int8", "keras"]), help="Inference runtime."
)


def expand(paths: tuple[Path, ...]) -> list[Path]:
    """Files as given; folders walked for every non-temporary file, in sorted order."""
    from skinscreen.ingest.scanner import walk

    out: list[Path] = []
    for path in paths:
        out += list(walk(path)) if path.is_dir() else [path]
    return out


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@MODEL
@BACKEND
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True)
@click.pass_obj
def predict(
    settings: Settings,
    paths: tuple[Path, ...],
    model: str | None,
    backend: str | None,
    batch_size: int,
    fmt: str,
) -> None:
    """Score image files or folders without any database; one row per file."""
    from skinscreen.models.classifier import load_classifier
    from skinscreen.models.screening import score_files

    classifier = load_classifier(
        model or settings.model, backend=backend or settings.backend, threads=settings.threads
    )
    results = score_files(expand(paths), classifier=classifier, batch_size=batch_size)
    rows = [
        {"path": str(r.path), "probability": r.probability, "flagged": r.flagged, "reason": r.reason}
        for r in results
    ]
    write_rows(rows, fmt=fmt, columns=["path", "probability", "flagged", "reason"])


@click.command()
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="Folder for metrics.json, report.md, PNGs (default: evaluations/DATA_DIR-MODEL_VERSION).",
)
@MODEL
@BACKEND
@click.option(
    "--train-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Training folder to find near-duplicates in (default: DATA_DIR/../train if present).",
)
@click.pass_obj
def evaluate(
    settings: Settings,
    data_dir: Path,
    out: Path | None,
    model: str | None,
    backend: str | None,
    train_dir: Path | None,
) -> None:
    """Score DATA_DIR/{benign,malignant} and write metrics.json, report.md and the figures."""
    from skinscreen.models.classifier import load_classifier
    from skinscreen.models.training.evaluate import evaluate as run_evaluate

    classifier = load_classifier(
        model or settings.model, backend=backend or settings.backend, threads=settings.threads
    )
    if train_dir is None and (data_dir.parent / "train").is_dir() and data_dir.resolve().name != "train":
        train_dir = data_dir.parent / "train"
    if out is None:  # one folder per data set and model, so a second evaluation does not overwrite the first
        out = Path("evaluations") / f"{data_dir.resolve().name}-{classifier.version}"
    metrics = run_evaluate(data_dir, classifier=classifier, out=out, train_dir=train_dir)
    everything = metrics["all"]
    at = everything["at_threshold"]
    click.echo(
        f"{everything['n']} images: accuracy {at['accuracy']:.4f} at threshold {classifier.threshold:.4f}, "
        f"ROC AUC {everything['roc_auc']:.4f}, sensitivity {at['sensitivity']:.4f}, "
        f"specificity {at['specificity']:.4f}; report in {out / 'report.md'}"
    )


COMMANDS = [predict, evaluate]
