"""Model commands: predict, evaluate, train, export."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import click
import numpy as np

from skinscreen.cli.base import write_rows
from skinscreen.config import Settings
from skinscreen.models.training.network import RECIPES

logger = logging.getLogger(__name__)

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
    from skinscreen.models.scoring import score_files

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
    "--out", type=click.Path(path_type=Path), required=True, help="Folder for metrics.json, report.md, PNGs."
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
    out: Path,
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
    metrics = run_evaluate(data_dir, classifier=classifier, out=out, train_dir=train_dir)
    everything = metrics["all"]
    at = everything["at_threshold"]
    click.echo(
        f"{everything['n']} images: accuracy {at['accuracy']:.4f} at threshold {classifier.threshold:.4f}, "
        f"ROC AUC {everything['roc_auc']:.4f}, sensitivity {at['sensitivity']:.4f}, "
        f"specificity {at['specificity']:.4f}; report in {out / 'report.md'}"
    )


@click.command()
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Run folder to create.")
@click.option(
    "--recipe",
    type=click.Choice(list(RECIPES)),
    default="default",
    show_default=True,
    help="paper: the paper's steps; default: ours; averaged, full: candidates measured against default.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Initialisation and augmentation seed.")
@click.option(
    "--split-seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed of the train/validation split (kept fixed across --seed runs).",
)
@click.option(
    "--backbone-weights",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="ImageNet MobileNetV2 no-top weights (.h5); without it Keras downloads them.",
)
@click.option(
    "--size",
    type=int,
    default=224,
    show_default=True,
    help="Input size in pixels (224 is the recipes' size; smaller sizes are for tests).",
)
@click.option(
    "--alpha", type=float, default=1.0, show_default=True, help="MobileNetV2 width (1.0 for real runs)."
)
@click.option("--limit", type=int, help="Use only the first N images per class (smoke tests).")
@click.option("--epochs-scale", type=float, default=1.0, help="Scale the recipe's epochs (smoke tests).")
@click.option(
    "--extra",
    "extra",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Another hospital's labelled folder (benign/, malignant/) to train on as well; repeatable.",
)
@click.option(
    "--init-from",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Start from another run's model.keras (to train it longer).",
)
def train(
    data_dir: Path,
    out: Path,
    recipe: str,
    seed: int,
    split_seed: int,
    backbone_weights: Path | None,
    size: int,
    alpha: float,
    limit: int | None,
    epochs_scale: float,
    extra: tuple[Path, ...],
    init_from: Path | None,
) -> None:
    """Train on DATA_DIR/train/{benign,malignant} and any --extra folders (DATA_DIR/test is never opened)."""
    from skinscreen.models.training.train import train as run_train

    run = run_train(
        data_dir,
        out=out,
        recipe=RECIPES[recipe],
        seed=seed,
        split_seed=split_seed,
        backbone_weights=backbone_weights,
        size=size,
        alpha=alpha,
        limit=limit,
        epochs_scale=epochs_scale,
        extra=extra,
        init_from=init_from,
    )
    click.echo(json.dumps({"out": str(out), "threshold": run["threshold"], "validation": run["validation"]}))


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--out", type=click.Path(path_type=Path), help="Model folder to write (default: RUN_DIR/model)."
)
@click.option("--name", help="Model version (default: derived from the recipe, seed and file hash).")
@click.option(
    "--test-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Evaluate the exported model here and put the figures in the model card.",
)
@click.option(
    "--external-dir",
    "external_dirs",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Another hospital's labelled test folder to report in the card (never used for a choice).",
)
def export(
    run_dir: Path, out: Path | None, name: str | None, test_dir: Path | None, external_dirs: tuple[Path, ...]
) -> None:
    """Write the deployable model: model.keras, model.onnx, card.json and MODEL_CARD.md."""
    from skinscreen.models.training.card import finish_card
    from skinscreen.models.training.export import export_run

    out = out or run_dir / "model"
    card = export_run(run_dir, out=out, name=name)
    finish_card(out, test_dir=test_dir, eval_out=run_dir / "test-evaluation", external_dirs=external_dirs)
    click.echo(f"exported {card['version']} to {out}")


@click.command()
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--calibration",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    required=True,
    help="Training images to calibrate on (a folder with benign/ and malignant/), never the test split.",
)
@click.option(
    "--images", type=int, default=256, show_default=True, help="Calibration images, half per class."
)
def quantize(model_dir: Path, calibration: Path, images: int) -> None:
    """Write MODEL_DIR/model.int8.onnx (use it with --backend onnx-int8)."""
    from skinscreen.models.training.dataset import list_labelled
    from skinscreen.models.training.quantize import quantize_model

    files = list_labelled(calibration)
    rng = np.random.default_rng(0)
    chosen = [
        files.paths[i]
        for c in (0, 1)
        for i in rng.permutation(np.nonzero(files.labels == c)[0])[: images // 2]
    ]
    out = quantize_model(model_dir, chosen)
    click.echo(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB) from {len(chosen)} calibration images")


COMMANDS = [predict, evaluate, train, export, quantize]
