"""One scoring path: `predict`, `evaluate`, `run` and a Celery worker give the same probabilities and flags.

The worker and the ingester run as real `skinscreen` processes (Redis, a SQLite file) and write the
modules they imported when they exit: the ingester never loads the models, pydicom or Pillow, and
the worker never loads the training code.
"""

from __future__ import annotations

import csv
import json
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from skinscreen.cli import cli
from tests.conftest import REPO, empty_redis_db
from tests.worker.pipeline import Process, env_for, wait_for

pytestmark = pytest.mark.integration

SAMPLES = sorted((REPO / "samples" / "inbox").iterdir())
# Runs a `skinscreen` command and, at exit, writes the names in sys.modules to the file in argv[1].
WITH_MODULES = """\
import atexit, json, sys
out, sys.argv = sys.argv[1], ["skinscreen", *sys.argv[2:]]
atexit.register(lambda: open(out, "w").write(json.dumps(sorted(sys.modules))))
from skinscreen.cli import main
main()
"""

Scores = dict[str, tuple[float, bool]]


@dataclass(frozen=True)
class Pipeline:
    """What the distributed run left: the worker's scores and both processes' imported modules."""

    worker: Scores
    worker_modules: list[str]
    ingester_modules: list[str]


def with_modules(out: Path) -> list[str]:
    """The command line of a `skinscreen` that writes its modules to `out` at exit."""
    return [sys.executable, "-c", WITH_MODULES, str(out)]


def sample_inbox(folder: Path) -> Path:
    """folder/inbox/siteA/ holding a copy of each sample; returns the inbox."""
    site = folder / "inbox" / "siteA"
    site.mkdir(parents=True)
    for src in SAMPLES:
        shutil.copy(src, site / src.name)
    return site.parent


def stored_scores(db: Path) -> Scores:
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT i.path, p.probability, p.flagged FROM image i JOIN prediction p ON p.image_id = i.id"
        ).fetchall()
    return {Path(path).name: (prob, bool(flagged)) for path, prob, flagged in rows}


@pytest.fixture(scope="module")
def redis_db() -> Iterator[str]:
    with empty_redis_db() as url:
        yield url


@pytest.fixture(scope="module")
def distributed(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path, redis_db: str) -> Pipeline:
    """The samples through `skinscreen ingest --once` and one `skinscreen worker --pool solo`."""
    work = tmp_path_factory.mktemp("distributed")
    inbox = sample_inbox(work)
    db = work / "screen.db"
    env = env_for(
        database_url=f"sqlite:///{db}",
        broker_url=redis_db,
        model=tiny_model,
        backend="onnx",
        threads=1,
        settle_seconds=0,
        batch_size=4,
        batch_wait=0.2,
    )
    subprocess.run([sys.executable, "-m", "skinscreen", "db", "upgrade"], env=env, check=True, timeout=120)
    worker = Process(
        ["worker", "--pool", "solo"],
        env=env,
        log=work / "worker.log",
        command=with_modules(work / "worker-modules.json"),
    )
    try:
        ingest = subprocess.run(
            [*with_modules(work / "ingest-modules.json"), "ingest", "--once", str(inbox)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert ingest.returncode == 0, ingest.stderr[-3000:]
        wait_for(lambda: len(stored_scores(db)) == len(SAMPLES), timeout=180, what="the worker to score")
    finally:
        worker.stop()
    assert (work / "worker-modules.json").exists(), worker.text()[-3000:]
    return Pipeline(
        worker=stored_scores(db),
        worker_modules=json.loads((work / "worker-modules.json").read_text()),
        ingester_modules=json.loads((work / "ingest-modules.json").read_text()),
    )


def invoke(args: list[str], **env: str) -> str:
    result = CliRunner().invoke(cli, args, env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_predict_evaluate_run_and_a_celery_worker_give_the_same_probabilities_and_flags(
    distributed: Pipeline, tiny_model: Path, tmp_path: Path
) -> None:
    model = ["--model", str(tiny_model), "--backend", "onnx"]
    rows = json.loads(invoke(["predict", *model, "--format", "json", *map(str, SAMPLES)]))
    predicted = {Path(r["path"]).name: (r["probability"], r["flagged"]) for r in rows}

    data = tmp_path / "labelled"
    for i, src in enumerate(SAMPLES):  # the labels do not matter here, only the scores
        (data / ("benign", "malignant")[i % 2]).mkdir(parents=True, exist_ok=True)
        shutil.copy(src, data / ("benign", "malignant")[i % 2] / src.name)
    invoke(["evaluate", str(data), "--out", str(tmp_path / "evaluation"), *model])
    with (tmp_path / "evaluation" / "predictions.csv").open() as fh:
        evaluated = {
            Path(r["path"]).name: (float(r["probability"]), r["flagged"] == "1") for r in csv.DictReader(fh)
        }

    run_db = tmp_path / "run.db"
    invoke(
        ["--database-url", f"sqlite:///{run_db}", "-q", "run", str(sample_inbox(tmp_path)), "--once"],
        SKINSCREEN_MODEL=str(tiny_model),
        SKINSCREEN_BACKEND="onnx",
        SKINSCREEN_SETTLE_SECONDS="0",
        SKINSCREEN_THREADS="1",
    )
    embedded = stored_scores(run_db)

    names = [p.name for p in SAMPLES]
    assert set(predicted) == set(evaluated) == set(embedded) == set(distributed.worker) == set(names)
    flags = {name: predicted[name][1] for name in names}
    assert any(flags.values()) and not all(flags.values())  # both sides of the threshold occur
    for name in names:
        probability = predicted[name][0]
        for other in (evaluated, embedded, distributed.worker):
            assert other[name][0] == pytest.approx(probability, abs=1e-6), name
            assert other[name][1] == flags[name], name


def test_the_ingester_process_never_imports_the_models_pydicom_or_pillow(distributed: Pipeline) -> None:
    assert "skinscreen.ingest.watcher" in distributed.ingester_modules  # the list is the ingester's
    forbidden = ("skinscreen.models", "skinscreen.worker", "pydicom", "PIL", "onnxruntime", "tensorflow")
    loaded = [
        m for m in distributed.ingester_modules if m.split(".")[0] in forbidden or m.startswith(forbidden)
    ]
    assert loaded == []


def test_a_worker_process_never_imports_the_training_code(distributed: Pipeline) -> None:
    assert "skinscreen.models.screening" in distributed.worker_modules  # the list is the worker's
    assert [m for m in distributed.worker_modules if m.startswith("skinscreen.models.training")] == []
