"""The per-hospital table (`evaluate-hospitals`) and the cheap model choice by a hospital left out
(`cache-features`, `leave-one-out`; docs/hospitals.md)."""

from __future__ import annotations

import json
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


@click.command("cache-features")
@click.argument("data_dirs", nargs=-1, required=True, type=FOLDER)
@click.option(
    "--out", type=click.Path(path_type=Path), required=True, help="Cache folder (outside the repository)."
)
@click.option(
    "--centre-cropped",
    "cropped_dirs",
    multiple=True,
    type=FOLDER,
    help="A hospital of centre crops, not full-frame squashes (also given as DATA_DIR); repeatable.",
)
@click.option(
    "--backbone-weights",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="ImageNet MobileNetV2 no-top weights (.h5).",
)
@click.option("--no-maps", is_flag=True, help="Keep only the pooled features (no block-15 activations).")
@click.option("--seed", type=int, default=0, show_default=True, help="Augmentation seed.")
def cache_features(
    data_dirs: tuple[Path, ...],
    out: Path,
    cropped_dirs: tuple[Path, ...],
    backbone_weights: Path,
    no_maps: bool,
    seed: int,
) -> None:
    """Cache the frozen backbone's features of each hospital's labelled folder.

    Two copies per image (as scored, and centre-squashed), one for a centre-cropped hospital.
    A hospital is named by its folder (`skin-cancer-mvb/train` -> `skin-cancer-mvb`).
    """
    from skinscreen.models.training.featurecache import build_cache, source_name

    folders = {source_name(d): d for d in data_dirs}
    cropped = {source_name(d) for d in cropped_dirs}
    seconds = build_cache(
        folders,
        out=out,
        backbone_weights=backbone_weights,
        centre_cropped=cropped,
        maps=not no_maps,
        seed=seed,
    )
    click.echo(json.dumps({"out": str(out), "seconds": seconds}))


@click.command("leave-one-out")
@click.argument("cache", type=FOLDER)
@click.option("--hospital", "hospitals", multiple=True, required=True, help="A cached hospital; repeatable.")
@click.option("--lever", "levers", multiple=True, help="A candidate (default: all); repeatable.")
@click.option("--seeds", type=int, default=3, show_default=True, help="Seeds 0..N-1 per candidate.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="JSON file for every figure.")
@click.option(
    "--backbone-weights",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="ImageNet MobileNetV2 no-top weights (.h5), for the candidates that fine-tune the upper blocks.",
)
def leave_one_out(
    cache: Path,
    hospitals: tuple[str, ...],
    levers: tuple[str, ...],
    seeds: int,
    out: Path | None,
    backbone_weights: Path | None,
) -> None:
    """Score candidate recipes by leaving each hospital out in turn (the rule in docs/hospitals.md)."""
    from skinscreen.models.training.featurecache import load_source
    from skinscreen.models.training.loho import LEVERS, render_results
    from skinscreen.models.training.loho import leave_one_out as run

    unknown = set(levers) - set(LEVERS)
    if unknown:
        raise click.UsageError(f"unknown lever(s) {sorted(unknown)}; known: {sorted(LEVERS)}")
    chosen = [LEVERS[name] for name in (levers or LEVERS)]
    maps = any(lever.stage == "upper" for lever in chosen)
    sources = [load_source(cache, name, maps=maps) for name in hospitals]
    results = [
        run(sources, lever=lever, seeds=list(range(seeds)), backbone_weights=backbone_weights)
        for lever in chosen
    ]
    if out is not None:
        out.write_text(json.dumps(results, indent=1) + "\n")
    click.echo(render_results(results), nl=False)


COMMANDS = [evaluate_hospitals, cache_features, leave_one_out]
