"""`skinscreen bench`: throughput measured side by side."""

from __future__ import annotations

from pathlib import Path

import click

from skinscreen.config import Settings


@click.command()
@click.option("--images", type=int, default=256, show_default=True, help="Images per measurement.")
@click.option(
    "--size",
    type=click.Choice(["224", "1024", "4000"]),
    default="224",
    show_default=True,
    help="Width of the test photos (upscaled dataset images above 224).",
)
@click.option(
    "--workers",
    type=int,
    default=1,
    show_default=True,
    help="Celery worker processes for the distributed measurement (0: skip it; needs Redis).",
)
@click.option(
    "--naive-images",
    type=int,
    default=64,
    show_default=True,
    help="Images for the naive baseline (it is slow).",
)
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option(
    "--data",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=Path("../shared/data/skin-cancer-mvb/test"),
    show_default=True,
    help="A folder of dataset images to build the bench images from.",
)
@click.option(
    "--soak",
    type=int,
    help="Instead: score this many images in one worker process and report "
    "its resident memory over time (e.g. --soak 10000).",
)
@click.option(
    "--baseline",
    help="Another model (shipped name or folder) whose runtime alone is measured on the same images.",
)
@click.pass_obj
def bench(
    settings: Settings,
    images: int,
    size: str,
    workers: int,
    naive_images: int,
    batch_size: int,
    data: Path,
    soak: int | None,
    baseline: str | None,
) -> None:
    """Print the runtime's throughput, the pipeline's end to end, a naive baseline and their ratios."""
    from skinscreen.bench import render, run_bench
    from skinscreen.bench import soak as run_soak
    from skinscreen.ingest.scanner import walk

    sources = sorted(walk(data))
    if not sources:
        raise click.UsageError(f"no images under {data}")
    if soak:
        click.echo(run_soak(sources, settings=settings, images=soak, batch_size=batch_size))
        return
    sources = [sources[i % len(sources)] for i in range(images)]
    rows = run_bench(
        sources,
        settings=settings,
        size=int(size),
        workers=workers,
        naive_images=min(naive_images, images),
        batch_size=batch_size,
        baseline=baseline,
    )
    click.echo(render(rows, size=int(size), extra={"model": settings.model, "cores": _cores()}))


def _cores() -> int:
    from skinscreen.models.classifier import default_threads

    return default_threads()


COMMANDS = [bench]
