"""`skinscreen bench`: throughput of the runtime alone, of the pipeline end to end, and of a naive baseline.

Everything is measured in one run on the same images, so the printed ratios compare like with like.
Large photos are made by upscaling dataset images (JPEG, quality 90).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from skinscreen.config import Settings
from skinscreen.models.classifier import Classifier


@dataclass
class Measure:
    """One line of the bench table."""

    name: str
    images: int
    seconds: float
    cpu_seconds: float | None = None
    """This process's CPU time (all its threads) over the measure; None where other processes work."""

    @property
    def per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("nan")

    @property
    def per_cpu_second(self) -> float:
        if self.cpu_seconds is None or self.cpu_seconds <= 0:
            return float("nan")
        return self.images / self.cpu_seconds


def make_images(sources: Sequence[Path], out: Path, *, size: int) -> list[Path]:
    """Copies (224) or bilinear upscales to size x 3/4 size (1024, 4000) of dataset images."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, src in enumerate(sources):
        dst = out / f"{i:05d}-{src.parent.name}-{src.stem}.jpg"
        if size <= 224:
            shutil.copy(src, dst)
        else:
            with Image.open(src) as im:
                im.convert("RGB").resize((size, size * 3 // 4), Image.Resampling.BILINEAR).save(
                    dst, quality=90
                )
        paths.append(dst)
    return paths


def raw_runtime(classifier: Classifier, pixels: np.ndarray, *, batch_size: int) -> Measure:
    """The model call alone on decoded, resized pixels (one warm-up batch first)."""
    classifier.predict(pixels[:batch_size])
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(0, len(pixels), batch_size):
        classifier.predict(pixels[i : i + batch_size])
    return Measure(
        f"runtime alone ({classifier.backend}, batch {batch_size})",
        len(pixels),
        time.perf_counter() - start,
        time.process_time() - cpu,
    )


def embedded(paths: Sequence[Path], *, classifier: Classifier, settings: Settings, work: Path) -> Measure:
    """Files in an inbox -> predictions in a SQLite database, in process (`skinscreen run --once`)."""
    from skinscreen.db import migrate
    from skinscreen.runner import run_embedded

    inbox = work / "inbox-embedded"
    _fill(inbox, paths)
    conf = settings.model_copy(
        update={"database_url": f"sqlite:///{work / 'embedded.db'}", "settle_seconds": 0.0}
    )
    migrate.upgrade(conf.database_url)  # creating the tables is set-up, not throughput
    start, cpu = time.perf_counter(), time.process_time()
    summary = run_embedded([inbox], settings=conf, once=True, progress=False, classifier=classifier)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    if summary.counts.scored != len(paths):
        raise RuntimeError(f"embedded run scored {summary.counts.scored} of {len(paths)}")
    return Measure("end to end, embedded", len(paths), seconds, cpu_seconds)


def distributed(paths: Sequence[Path], *, settings: Settings, work: Path, workers: int) -> Measure:
    """Files in an inbox -> predictions, through Redis and `workers` Celery worker processes."""
    import redis

    from skinscreen.db import migrate

    url = f"sqlite:///{work / 'distributed.db'}"  # WAL: several worker processes may write
    migrate.upgrade(url)
    client = redis.Redis.from_url(settings.broker_url)
    client.delete("skinscreen")
    threads = max(1, (os.cpu_count() or 1) // workers)
    env = {
        **os.environ,
        "SKINSCREEN_DATABASE_URL": url,
        "SKINSCREEN_BROKER_URL": settings.broker_url,
        "SKINSCREEN_MODEL": settings.model,
        "SKINSCREEN_THREADS": str(threads),
        "SKINSCREEN_BATCH_SIZE": str(settings.batch_size),
        "SKINSCREEN_SETTLE_SECONDS": "0",
        "SKINSCREEN_BATCH_WAIT": "0.2",
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    logs = [work / f"worker{i}.log" for i in range(workers)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "skinscreen", "worker", "--concurrency", "1", "-n", f"bench{i}@%h"],
            env=env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        for i, log in enumerate(logs)
    ]
    try:
        _wait(
            lambda: all("ready." in log.read_text(errors="replace") for log in logs), 120, "workers to start"
        )
        time.sleep(2)  # the children load the model after the fork
        inbox = work / "inbox-distributed"
        _fill(inbox, paths)
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "skinscreen", "-q", "ingest", str(inbox), "--once"],
            env=env,
            check=True,
            capture_output=True,
        )
        _wait(lambda: _scored(url) >= len(paths), 3600, "the workers to score every image")
        seconds = time.perf_counter() - start
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=60)
    return Measure(f"end to end, {workers} Celery worker process(es)", len(paths), seconds)


def naive(paths: Sequence[Path], *, model_dir: Path, tta: str, size: int) -> Measure:
    """A notebook's loop: load each file with Keras utils and call `model.predict` on it alone.

    It computes the same score as skinscreen (the model's test-time views), one file per call.
    """
    import keras

    from skinscreen.models.layers import load_keras_model
    from skinscreen.models.preprocess import tta_views

    model = load_keras_model(model_dir / "model.keras")
    model.predict(tta_views(np.zeros((1, size, size, 3), "float32"), tta), verbose=0)  # the calls' shape
    start, cpu = time.perf_counter(), time.process_time()
    for path in paths:
        image = keras.utils.img_to_array(keras.utils.load_img(path, target_size=(size, size)))
        model.predict(tta_views(image[None], tta), verbose=0)
    return Measure(
        "naive: Keras model.predict, one file a call",
        len(paths),
        time.perf_counter() - start,
        time.process_time() - cpu,
    )


def run_bench(
    sources: Sequence[Path],
    *,
    settings: Settings,
    size: int,
    workers: int,
    naive_images: int,
    batch_size: int,
    baseline: str | None = None,
) -> list[Measure]:
    """All measurements on the same images; returns the table rows.

    With `baseline` (another model), its runtime alone is measured on the same pixels right after
    this model's, so the two models' costs are compared in one run.
    """
    from skinscreen.models.classifier import load_classifier
    from skinscreen.models.training.dataset import load_pixels

    classifier = load_classifier(settings.model, backend=settings.backend, threads=settings.threads)
    settings = settings.model_copy(update={"batch_size": batch_size})
    with tempfile.TemporaryDirectory(prefix="skinscreen-bench-") as tmp:
        work = Path(tmp)
        paths = make_images(sources, work / "images", size=size)
        pixels = load_pixels(paths, size=classifier.input_size)
        rows = [raw_runtime(classifier, pixels, batch_size=batch_size)]
        if baseline:
            other = load_classifier(baseline, backend=settings.backend, threads=settings.threads)
            row = raw_runtime(other, load_pixels(paths, size=other.input_size), batch_size=batch_size)
            views = other.card.data.get("views", other.card.tta)
            row.name = f"{BASELINE}{other.version} ({views} views)"
            rows.append(row)
        rows.append(embedded(paths, classifier=classifier, settings=settings, work=work))
        if workers:
            rows.append(distributed(paths, settings=settings, work=work, workers=workers))
        rows.append(
            naive(
                paths[:naive_images],
                model_dir=classifier.card.path,
                tta=classifier.card.tta,
                size=classifier.input_size,
            )
        )
    return rows


BASELINE = "baseline runtime alone: "


def render(rows: list[Measure], *, size: int, extra: dict[str, Any]) -> str:
    raw, naive_row = rows[0], rows[-1]
    lines = [
        f"images {size}px wide; " + ", ".join(f"{k} {v}" for k, v in extra.items()),
        "",
        f"{'measure':<48} {'images':>7} {'seconds':>8} {'img/s':>8} {'x runtime':>10} {'x naive':>8}"
        f" {'cpu ms/img':>11} {'x runtime (cpu)':>16}",
    ]
    for row in rows:
        cpu_ms = 1000 / row.per_cpu_second if row.cpu_seconds else float("nan")
        lines.append(
            f"{row.name:<48} {row.images:>7} {row.seconds:>8.2f} {row.per_second:>8.1f} "
            f"{row.per_second / raw.per_second:>10.2f} {row.per_second / naive_row.per_second:>8.2f}"
            f" {cpu_ms:>11.2f} {row.per_cpu_second / raw.per_cpu_second:>16.2f}"
        )
    for row in rows:
        if row.name.startswith(BASELINE):
            lines += [
                "",
                f"runtime alone: {raw.per_second / row.per_second:.2f} x the baseline model's "
                f"({raw.per_cpu_second / row.per_cpu_second:.2f} x by CPU time)",
            ]
    lines += [
        "",
        "cpu: this process's CPU time, every thread (not the Celery workers'); on a shared machine it",
        "moves less with the load than the wall-clock figures.",
    ]
    return "\n".join(lines)


def _fill(inbox: Path, paths: Sequence[Path]) -> None:
    inbox.mkdir(parents=True, exist_ok=True)
    for path in paths:
        os.link(path, inbox / path.name)


def _scored(url: str) -> int:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.connect() as conn:
        n = conn.execute(sa.text("SELECT count(*) FROM image WHERE state != 'queued'")).scalar_one()
    engine.dispose()
    return int(n)


def _wait(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.2)


def rss_bytes() -> int:
    """This process's resident set size (Linux /proc; 0 elsewhere)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE")


def soak(
    sources: Sequence[Path], *, settings: Settings, images: int, batch_size: int, warmup: int = 500
) -> str:
    """Score `images` rows through the worker's `score_ids` and report resident memory over time.

    The rows point at the dataset files (each row with its own sha256 key), so the soak exercises
    the worker's path (database, decode pool, model) without first writing thousands of copies.
    """
    from concurrent.futures import ThreadPoolExecutor

    from skinscreen.counts import Counts
    from skinscreen.db import migrate, queries
    from skinscreen.db.session import make_engine, make_session_factory, session_scope
    from skinscreen.models.classifier import load_classifier
    from skinscreen.worker.batches import score_ids

    classifier = load_classifier(settings.model, backend=settings.backend, threads=settings.threads)
    with tempfile.TemporaryDirectory(prefix="skinscreen-soak-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'soak.db'}"
        migrate.upgrade(url)
        engine = make_engine(url)
        sessions = make_session_factory(engine)
        with session_scope(sessions) as session:
            ids = [
                queries.register_file(
                    session,
                    path=str(sources[i % len(sources)]),
                    size=0,
                    mtime_ns=i,
                    sha256=f"{i:064x}",
                    site="soak",
                    folder="soak",
                )[0]
                for i in range(images)
            ]
        samples: list[tuple[int, int]] = []
        report = Counts()
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=settings.threads or 2) as pool:
            for i in range(0, len(ids), batch_size):
                report.add(
                    score_ids(
                        ids[i : i + batch_size],
                        sessions=sessions,
                        classifier=classifier,
                        pool=pool,
                        settings=settings,
                    )
                )
                samples.append((min(i + batch_size, len(ids)), rss_bytes()))
        seconds = time.perf_counter() - start
        engine.dispose()
    after_warmup = next(rss for done, rss in samples if done >= min(warmup, images))
    peak = max(rss for done, rss in samples if done >= min(warmup, images))
    final = samples[-1][1]
    mib = 1024 * 1024
    lines = [
        f"soak: {report.scored} scored, {report.failed} failed in {seconds:.0f} s "
        f"({report.scored / seconds:.1f} img/s)",
        f"resident memory after {min(warmup, images)} images (warm-up): {after_warmup / mib:.0f} MiB",
        f"peak after warm-up: {peak / mib:.0f} MiB ({peak / after_warmup:.3f} x)",
        f"final after {images}: {final / mib:.0f} MiB ({final / after_warmup:.3f} x)",
    ]
    step = max(1, len(samples) // 10)
    lines += [f"  {done:>6} images: {rss / mib:.0f} MiB" for done, rss in samples[::step]]
    return "\n".join(lines)
