"""`skinscreen evaluate-hospitals`: the per-hospital table, from one command."""

from __future__ import annotations

from pathlib import Path

import click

from skinscreen.cli.model_commands import BACKEND, MODEL
from skinscreen.config import Settings

FOLDER = click.Path(exists=True, file_okay=False, path_type=Path)


@click.command("evaluate-hospitals")
@click.argument("data_dirs", nargs=-1, type=FOLDER)
@click.option(
    "--trained-on",
    "trained_dirs",
    multiple=True,
    type=FOLDER,
    help="A hospital's labelled folder the model was trained on: scored too, and marked so; repeatable.",
)
@click.option(
    "--out", type=click.Path(path_type=Path), help="Folder for hospitals.json, hospitals.md and predictions."
)
@MODEL
@BACKEND
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.pass_context
def evaluate_hospitals(
    ctx: click.Context,
    data_dirs: tuple[Path, ...],
    trained_dirs: tuple[Path, ...],
    out: Path | None,
    model: str | None,
    backend: str | None,
    batch_size: int,
) -> None:
    """Score several labelled folders (DIR/{benign,malignant}) and print one row per hospital.

    Each row: n, ROC AUC, sensitivity and specificity at the threshold in force, with 95 %
    intervals, and sensitivity per diagnosis group where the folder's MANIFEST.csv has `dx` or
    `diagnosis`. Example:

    \b
      skinscreen evaluate-hospitals data/skin-cancer-mvb/test data/ph2 \\
          data/ham10000-rosendahl --trained-on data/skin-cancer-bcn
    """
    from skinscreen.cli.base import QUIET
    from skinscreen.models.classifier import load_classifier
    from skinscreen.models.training.hospitals import HospitalSet, evaluate_hospitals, render_table

    if not data_dirs and not trained_dirs:
        raise click.UsageError("give at least one labelled folder")
    settings: Settings = ctx.obj
    classifier = load_classifier(
        model or settings.model, backend=backend or settings.backend, threads=settings.threads
    )
    sets = [HospitalSet(d) for d in data_dirs] + [HospitalSet(d, trained_on=True) for d in trained_dirs]
    result = evaluate_hospitals(
        sets, classifier=classifier, out=out, batch_size=batch_size, progress=not ctx.meta.get(QUIET)
    )
    click.echo(render_table(result), nl=False)


COMMANDS = [evaluate_hospitals]
