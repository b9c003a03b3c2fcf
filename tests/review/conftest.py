"""Fixtures for the review server: a filled database, accounts, an app and clients."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw
from pydantic import SecretStr

from skinscreen.config import Settings
from skinscreen.db import migrate, queries
from skinscreen.db.accounts import add_account
from skinscreen.db.session import make_engine, make_session_factory, session_scope
from skinscreen.db.tables import Role
from skinscreen.images import read_image
from skinscreen.review import create_app
from skinscreen.review.passwords import hash_password
from tests.conftest import DATA, REPO, dataset_images, fresh_pg_schema
from tests.conftest import result as scored_as

SECRET = SecretStr("test-secret-key-0123456789abcdefghijklmnopqrstuvwxyz")
PASSWORDS = {"alice": "alice-password-1", "root": "root-password-12"}
MODEL_VERSION = "tiny-test"
DICOM_SAMPLE = REPO / "tests" / "data" / "isic_test_malignant_13_jpeg_baseline.dcm"
# (name, site, probability or failure reason or None for still queued)
CASES: list[tuple[str, str, float | str | None]] = [
    ("a1", "siteA", 0.97),
    ("a2", "siteA", 0.91),
    ("a3", "siteA", 0.62),
    ("a4", "siteA", 0.12),
    ("a5", "siteA", "not an image: unrecognised file content"),
    ("a6", "siteA", None),
    ("b1", "siteB", 0.85),
    ("b2", "siteB", 0.30),
]
THRESHOLD = 0.5
BATCH_DATE = "2026-11-27"


@dataclass(frozen=True)
class Seeded:
    """A filled database: its URL, the case ids by name, the account ids by name."""

    url: str
    ids: dict[str, int]
    accounts: dict[str, int]
    threshold: float = THRESHOLD

    @property
    def queue(self) -> list[int]:
        """Flagged ids, highest probability first (a1, a2, b1, a3 at the default threshold 0.5)."""
        scored = [(p, n) for n, _, p in CASES if isinstance(p, float) and p >= self.threshold]
        return [self.ids[n] for _, n in sorted(scored, reverse=True)]


def draw_lesion(path: Path, *, seed: int, size: int = 224) -> Path:
    """A brown blob on skin-coloured noise, different for every seed."""
    rng = np.random.default_rng(seed)
    skin = np.array([224, 180, 160]) + rng.normal(0, 8, (size, size, 3))
    im = Image.fromarray(np.clip(skin, 0, 255).astype(np.uint8))
    r = size // 4 + seed % 20
    cx, cy = size // 2 + seed % 11 - 5, size // 2 - seed % 7 + 3
    ImageDraw.Draw(im).ellipse((cx - r, cy - r, cx + r, cy + r), fill=(110 - seed % 30, 70, 50))
    im.save(path, format="JPEG", quality=90)
    return path


def lesion_files(folder: Path, count: int) -> list[Path]:
    """Dataset images when the dataset is here (nicer screenshots), drawn lesions otherwise."""
    folder.mkdir(parents=True, exist_ok=True)
    if DATA.is_dir():
        sources = dataset_images("malignant", count)
        return [Path(shutil.copy(src, folder / f"case{i}.jpg")) for i, src in enumerate(sources)]
    return [draw_lesion(folder / f"case{i}.jpg", seed=i) for i in range(count)]


def seed_database(
    url: str, files: Path, *, model_version: str = MODEL_VERSION, threshold: float = THRESHOLD
) -> Seeded:
    """Migrate `url`, then register the CASES with their (fixed) scores and the two accounts."""
    migrate.upgrade(url)
    paths = lesion_files(files / "inbox", len(CASES))
    paths[CASES.index(next(c for c in CASES if c[0] == "b1"))] = Path(
        shutil.copy(DICOM_SAMPLE, files / "inbox" / "b1.dcm")
    )
    # Each file in its batch folder, <inbox>/<site>/<date>/, where the ingester would have found it.
    for index, ((_, site, _), path) in enumerate(zip(CASES, paths, strict=True)):
        batch = files / "inbox" / site / BATCH_DATE
        batch.mkdir(parents=True, exist_ok=True)
        paths[index] = path.rename(batch / path.name)
    engine = make_engine(url)
    ids: dict[str, int] = {}
    accounts: dict[str, int] = {}
    with session_scope(make_session_factory(engine)) as session:
        scores = {}
        for (name, site, result), path in zip(CASES, paths, strict=True):
            ids[name], _ = queries.register_file(
                session,
                path=str(path),
                size=path.stat().st_size,
                mtime_ns=1,
                sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
                site=site,
                folder=str(path.parent),
            )
            loaded = read_image(path)
            if isinstance(result, float):
                scores[ids[name]] = scored_as(
                    result, threshold=threshold, format=loaded.format, dicom=loaded.dicom
                )
            elif isinstance(result, str):
                scores[ids[name]] = scored_as(reason=result)
        queries.save_scores(session, scores, model_version=model_version)
        for name, role in (("alice", Role.reviewer), ("root", Role.admin)):
            account = add_account(session, name=name, role=role, password_hash=hash_password(PASSWORDS[name]))
            accounts[name] = account.id
    engine.dispose()
    return Seeded(url=url, ids=ids, accounts=accounts, threshold=threshold)


def review_settings(url: str, *, tmp: Path, model: Path) -> Settings:
    return Settings(database_url=url, secret_key=SECRET, heatmap_dir=tmp / "heatmaps", model=str(model))


def token_for(client: TestClient, name: str) -> dict[str, str]:
    """Authorization headers with a fresh bearer token for `name`."""
    response = client.post("/api/token", data={"username": name, "password": PASSWORDS[name]})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


DATABASES = ["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)]
"""Every review API test runs on a SQLite file and on PostgreSQL."""


@pytest.fixture(scope="module", params=DATABASES)
def module_db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database shared by one module's read-only tests: a SQLite file or a PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'review.db'}"
        return
    with fresh_pg_schema() as url:
        yield url


@pytest.fixture(params=DATABASES)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database for one test: a SQLite file or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'review.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def seeded(db_url: str, tmp_path: Path) -> Seeded:
    return seed_database(db_url, tmp_path)


@pytest.fixture
def app(seeded: Seeded, tmp_path: Path, tiny_model: Path) -> FastAPI:
    return create_app(review_settings(seeded.url, tmp=tmp_path, model=tiny_model))


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def shared(
    module_db_url: str, tmp_path_factory: pytest.TempPathFactory, tiny_model: Path
) -> Iterator[tuple[TestClient, Seeded, dict[str, dict[str, str]]]]:
    """One client over one filled database for tests that change nothing that matters to the others."""
    tmp = tmp_path_factory.mktemp("shared")
    seeded = seed_database(module_db_url, tmp)
    with TestClient(create_app(review_settings(seeded.url, tmp=tmp, model=tiny_model))) as test_client:
        tokens = {name: token_for(test_client, name) for name in PASSWORDS}
        yield test_client, seeded, tokens
