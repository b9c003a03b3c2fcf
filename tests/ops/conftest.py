"""A deployment that has run for a while: 200 scored images in two sites, 30 verdicts, a second model."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner, Result
from fastapi.testclient import TestClient
from pydantic import SecretStr

from skinscreen.checksum import sha256_file
from skinscreen.cli import cli
from skinscreen.config import Settings
from skinscreen.db import accounts, verdicts
from skinscreen.db.audit import Action, record
from skinscreen.db.session import make_engine, make_session_factory, session_scope
from skinscreen.db.tables import Role, Verdict
from skinscreen.models.classifier import load_classifier
from skinscreen.models.training.dataset import load_pixels
from skinscreen.review import create_app
from skinscreen.review.passwords import hash_password
from tests.conftest import DATA, dataset_images
from tests.review.conftest import draw_lesion

IMAGES_PER_SITE = 100
PASSWORD = "alice-password-1"
# 30 verdicts on 28 cases: the first 28 image ids get one each, and two of them a later second opinion.
VERDICTS = [Verdict.malignant] * 12 + [Verdict.benign] * 13 + [Verdict.uncertain] * 3
SECOND_OPINIONS = {1: Verdict.benign, 13: Verdict.malignant}  # case index -> later verdict


@pytest.fixture(scope="session")
def world_sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    """200 lesion images per site folder name: dataset test images (half of each class), else drawn ones."""
    root = tmp_path_factory.mktemp("sources")
    if DATA.is_dir():
        mixed = [
            p
            for pair in zip(dataset_images("benign", 100), dataset_images("malignant", 100), strict=True)
            for p in pair
        ]
        files = [Path(shutil.copy(src, root / f"{i:03d}.jpg")) for i, src in enumerate(mixed)]
    else:
        files = [draw_lesion(root / f"{i:03d}.jpg", seed=i, size=96) for i in range(2 * IMAGES_PER_SITE)]
    return {"site-a": files[:IMAGES_PER_SITE], "site-b": files[IMAGES_PER_SITE:]}


def at_median_threshold(model_dir: Path, files: list[Path]) -> None:
    """Set the card's threshold to the median score on `files`, so that about half are flagged."""
    clf = load_classifier(model_dir, backend="onnx")
    card = json.loads((model_dir / "card.json").read_text())
    card["threshold"] = float(np.median(clf.predict(load_pixels(files, size=clf.input_size))))
    (model_dir / "card.json").write_text(json.dumps(card))


def build_small_cnn(out: Path, *, version: str, seed: int, size: int = 64) -> Path:
    """A small random CNN with the tiny model's contract (size x size RGB in 0..255), as .keras and .onnx.

    A second version with other weights and another architecture, so that its flags differ from
    tiny-test's; a few conv filters build and export in a fraction of a MobileNetV2's time.
    """
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((size, size, 3), name="pixels")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(inputs)
    x = keras.layers.Conv2D(8, 5, strides=4, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(
        1, activation="sigmoid", kernel_initializer=keras.initializers.RandomNormal(0, 3)
    )(x)
    model = keras.Model(inputs, outputs)
    out.mkdir(parents=True, exist_ok=True)
    model(np.zeros((1, size, size, 3), "float32"))
    model.save(out / "model.keras")
    model.export(str(out / "model.onnx"), format="onnx", verbose=False)
    (out / "card.json").write_text(json.dumps({"version": version, "threshold": 0.5, "input_size": size}))
    return out


@pytest.fixture(scope="session")
def tiny_b(tmp_path_factory: pytest.TempPathFactory, world_sources: dict[str, list[Path]]) -> Path:
    """A second model version, its threshold at the median of the world's images, files hashed in its card."""
    out = build_small_cnn(tmp_path_factory.mktemp("models") / "tiny-b", version="tiny-b", seed=1)
    at_median_threshold(out, [p for files in world_sources.values() for p in files])
    card = json.loads((out / "card.json").read_text())
    card["files"] = {
        name: {"sha256": sha256_file(out / name), "bytes": (out / name).stat().st_size}
        for name in ("model.onnx", "model.keras")
    }
    card["tta"] = "none"
    card["test"] = {
        "all": {"n": 20, "roc_auc": 0.5, "at_threshold": {"sensitivity": 0.5, "specificity": 0.5}}
    }
    (out / "card.json").write_text(json.dumps(card))
    return out


def invoke(env: dict[str, str], *args: str, code: int = 0) -> Result:
    # An expected failure is caught, so that its exception can be inspected.
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=code != 0)
    assert result.exit_code == code, result.output
    return result


@dataclass
class World:
    """A SQLite deployment in a temporary folder, and the environment its commands run with."""

    root: Path
    inbox: Path
    db_file: Path
    env: dict[str, str]

    @property
    def url(self) -> str:
        return f"sqlite:///{self.db_file}"

    def cli(self, *args: str, code: int = 0) -> Result:
        return invoke(self.env, *args, code=code)

    def json(self, *args: str) -> Any:
        return json.loads(self.cli(*args).stdout)

    def rows(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.db_file) as conn:
            return conn.execute(sql, params).fetchall()

    def counts(self) -> dict[str, int]:
        tables = [r[0] for r in self.rows("SELECT name FROM sqlite_master WHERE type='table'")]
        return {t: self.rows(f'SELECT count(*) FROM "{t}"')[0][0] for t in sorted(tables)}


def build_world(root: Path, model: Path, sources: dict[str, list[Path]]) -> World:
    """200 lesions in two sites, scored with `model` (`run --once`), and 30 verdicts."""
    inbox = root / "inbox"
    for site, files in sources.items():
        folder = inbox / site / "2026-11-01"
        folder.mkdir(parents=True)
        for i, src in enumerate(files):
            shutil.copy(src, folder / f"lesion{i:03d}.jpg")
    world = World(
        root=root,
        inbox=inbox,
        db_file=root / "skinscreen.db",
        env={
            "SKINSCREEN_DATABASE_URL": f"sqlite:///{root / 'skinscreen.db'}",
            "SKINSCREEN_MODEL": str(model),
            "SKINSCREEN_MODELS_DIR": str(root / "models"),
            "SKINSCREEN_SETTLE_SECONDS": "0",
            "SKINSCREEN_BATCH_WAIT": "0",
        },
    )
    summary = world.json("run", str(inbox), "--once", "--format", "json")
    assert summary["scored"] == 2 * IMAGES_PER_SITE
    engine = make_engine(world.url)
    with session_scope(make_session_factory(engine)) as session:
        alice = accounts.add_account(
            session, name="alice", role=Role.reviewer, password_hash=hash_password(PASSWORD)
        )
        ids = [r[0] for r in world.rows("SELECT id FROM image ORDER BY id")]
        for index, verdict in enumerate(VERDICTS):
            verdicts.add_review(session, image_id=ids[index], account_id=alice.id, verdict=verdict, note=None)
            record(
                session, account_id=alice.id, action=Action.verdict, image_id=ids[index], detail=verdict.value
            )
        for index, verdict in SECOND_OPINIONS.items():
            verdicts.add_review(session, image_id=ids[index], account_id=alice.id, verdict=verdict, note=None)
            record(
                session, account_id=alice.id, action=Action.verdict, image_id=ids[index], detail=verdict.value
            )
    engine.dispose()
    assert world.rows("SELECT count(*) FROM review")[0][0] == 30
    return world


METRICS_TOKEN = "ops-test-metrics-token-0123456789"
"""The review server's /metrics token in these tests (without one it answers 401)."""


@contextmanager
def review_client(world: World, model: Path) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """The review app over the world's database, signed in as alice (page session and API token)."""
    settings = Settings(
        database_url=world.url,
        secret_key=SecretStr("ops-test-secret-key-0123456789abcdefghijkl"),
        heatmap_dir=world.root / "heatmaps",
        model=str(model),
        metrics_token=SecretStr(METRICS_TOKEN),
    )
    with TestClient(create_app(settings)) as client:
        form = client.get("/login").text
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', form)
        assert csrf is not None
        data = {"username": "alice", "password": PASSWORD, "csrf_token": csrf.group(1)}
        assert client.post("/login", data=data, follow_redirects=False).status_code == 303
        token = client.post("/api/token", data={"username": "alice", "password": PASSWORD})
        yield client, {"Authorization": f"Bearer {token.json()['access_token']}"}


@pytest.fixture
def world(tmp_path: Path, tiny_model: Path, world_sources: dict[str, list[Path]]) -> World:
    return build_world(tmp_path, tiny_model, world_sources)


@pytest.fixture
def world_b(tmp_path: Path, tiny_b: Path, world_sources: dict[str, list[Path]]) -> World:
    """The same deployment scored with tiny-b, which flags about half of the images."""
    return build_world(tmp_path, tiny_b, world_sources)
