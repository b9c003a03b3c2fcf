"""Training commands: train, export, quantize (what an ML engineer runs, never a worker)."""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

from skinscreen.models.training.network import RECIPES


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
@click.option(
    "--teacher",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Teacher scores (.npz from scripts/teacher_scores.py) to distil from.",
)
@click.option(
    "--teacher-name",
    "teacher_names",
    multiple=True,
    help="Which teacher(s) in the --teacher file to average (default: all); repeatable.",
)
@click.option(
    "--distill-weight",
    type=click.FloatRange(0.0, 0.5),
    default=0.5,
    show_default=True,
    help="Share of the teacher's score in the training target; the label keeps the rest (at least half).",
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
    teacher: Path | None,
    teacher_names: tuple[str, ...],
    distill_weight: float,
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
        teacher=teacher,
        teachers=teacher_names,
        distill_weight=distill_weight,
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
    from skinscreen.models.labelled import list_labelled
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


COMMANDS = [train, export, quantize]
