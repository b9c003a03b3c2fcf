"""Shared fixtures: a clean environment, the dataset, a tiny model, PostgreSQL and Redis."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
# TEST_DATA_DIR points the tests at another copy of the dataset (or, set to a missing folder, shows
# that every test needing it skips).
DATA = Path(os.environ.get("TEST_DATA_DIR") or SHARED / "data" / "skin-cancer-mvb")
WEIGHTS = SHARED / "weights" / "mobilenet_v2_1.0_224_imagenet_no_top.weights.h5"
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
# The tests empty their Redis database: by default db 15, never db 0, where a machine's own work
# usually waits. TEST_REDIS_URL lets developers run suites side by side on one Redis (each its own db).
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
IN_CI = bool(os.environ.get("CI"))


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """No SKINSCREEN_* from the developer's shell leaks into a test."""
    for key in list(os.environ):
        if key.startswith("SKINSCREEN_"):
            monkeypatch.delenv(key)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA.is_dir():
        pytest.skip(f"dataset not found at {DATA}")
    return DATA


def dataset_images(label: str, count: int, *, split: str = "test") -> list[Path]:
    """The first `count` dataset images of a class, in a stable order; skips the test without the dataset."""
    if not DATA.is_dir():
        pytest.skip(f"dataset not found at {DATA}")
    return sorted((DATA / split / label).glob("*.jpg"), key=lambda p: int(p.stem))[:count]


def build_tiny_model(out: Path, *, size: int = 64, version: str = "tiny-test", onnx: bool = True) -> Path:
    """A real MobileNetV2 (alpha 0.35, random weights): .keras, .onnx (unless onnx=False) and a card."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((size, size, 3), name="pixels")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(inputs)
    base = keras.applications.MobileNetV2(
        input_shape=(size, size, 3), alpha=0.35, include_top=False, weights=None
    )
    x = keras.layers.GlobalAveragePooling2D()(base(x, training=False))
    # Untrained, the backbone's features shrink to about 1e-11 (every probability would be 0.5);
    # scaled back up, they and a large random head spread the probabilities across the threshold.
    x = keras.layers.Rescaling(1e9, name="feature_scale")(x)
    outputs = keras.layers.Dense(
        1, activation="sigmoid", kernel_initializer=keras.initializers.RandomNormal(0, 3)
    )(x)
    model = keras.Model(inputs, outputs)
    out.mkdir(parents=True, exist_ok=True)
    model(np.zeros((1, size, size, 3), "float32"))
    model.save(out / "model.keras")
    if onnx:  # the export takes most of the time; Grad-CAM needs only the .keras file
        model.export(str(out / "model.onnx"), format="onnx", verbose=False)
    card = {"version": version, "threshold": 0.5, "input_size": size}
    (out / "card.json").write_text(json.dumps(card))
    return out


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model directory; its threshold sits at the median score of some dataset images."""
    from skinscreen.models.classifier import load_classifier
    from skinscreen.models.training.dataset import load_pixels

    out = build_tiny_model(tmp_path_factory.mktemp("models") / "tiny")
    if DATA.is_dir():
        clf = load_classifier(out, backend="onnx")
        sample = dataset_images("benign", 10) + dataset_images("malignant", 10)
        probs = clf.predict(load_pixels(sample, size=clf.input_size))
        card = json.loads((out / "card.json").read_text())
        card["threshold"] = float(np.median(probs))
        (out / "card.json").write_text(json.dumps(card))
    return out


def service_unavailable(what: str, exc: Exception) -> None:
    """Skip locally when a service is down; in CI, fail."""
    message = f"{what} is not reachable: {exc}"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


@contextmanager
def fresh_pg_schema(base: str = PG_URL) -> Iterator[str]:
    """A new schema in the PostgreSQL at `base` (its URL), dropped afterwards."""
    import sqlalchemy as sa

    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base, pool_pre_ping=True)  # survives the restart tests
    try:
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        service_unavailable(f"PostgreSQL at {base}", exc)
    yield f"{base}?options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh schema for each test."""
    with fresh_pg_schema() as url:
        yield url


@contextmanager
def empty_redis_db() -> Iterator[str]:
    """Redis database 15 (or TEST_REDIS_URL's), emptied before and after."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.flushdb()
    except redis.RedisError as exc:
        service_unavailable("Redis at 127.0.0.1:6379", exc)
    yield REDIS_URL
    client.flushdb()
    client.close()


@pytest.fixture
def redis_url() -> Iterator[str]:
    """An empty Redis database for each test."""
    with empty_redis_db() as url:
        yield url


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    path = tmp_path / "inbox"
    path.mkdir()
    return path


def result(
    probability: float | None = None,
    *,
    reason: str | None = None,
    threshold: float = 0.5,
    format: str | None = None,
    dicom: Any = None,
) -> Any:
    """A scoring result as `score_files` makes it: a probability flagged at `threshold`, or a reason."""
    from skinscreen.flagging import is_flagged
    from skinscreen.results import FileScore

    if probability is None:
        return FileScore(Path("-"), None, None, None, reason, format, dicom)
    return FileScore(
        Path("-"), probability, is_flagged(probability, threshold), threshold, None, format, dicom
    )


def copy_images(paths: list[Path], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copy(p, folder / p.name)) for p in paths]
