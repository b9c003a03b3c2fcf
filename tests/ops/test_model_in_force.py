"""The promoted version is the model in force: workers take it up between batches, no restart, no setting."""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.orm import Session, sessionmaker

from skinscreen import metrics
from skinscreen.config import Settings
from skinscreen.db import accounts, migrate
from skinscreen.db.promotions import promoted_version
from skinscreen.db.session import make_engine, make_session_factory, session_scope
from skinscreen.db.tables import ModelPromotion, Role, utcnow
from skinscreen.errors import ModelError
from skinscreen.models.registry import install_model
from skinscreen.ops.promotion import promote
from skinscreen.review.passwords import hash_password
from skinscreen.worker.in_force import RETRY_SECONDS, ModelInForce
from tests.conftest import copy_images, dataset_images
from tests.ops.conftest import METRICS_TOKEN, PASSWORD, World, invoke, review_client
from tests.worker.pipeline import Process, cli, env_for, image_rows, predict_by_sha, sha256, wait_for

Sessions = sessionmaker[Session]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def deployment(tmp_path: Path, tiny_model: Path, tiny_b: Path) -> Iterator[tuple[Settings, Sessions]]:
    """A SQLite deployment whose SKINSCREEN_MODEL is tiny-test, with tiny-b installed, nothing promoted."""
    url = f"sqlite:///{tmp_path / 'skinscreen.db'}"
    migrate.upgrade(url)
    settings = Settings(
        database_url=url, model=str(tiny_model), models_dir=tmp_path / "models", backend="onnx"
    )
    install_model(tiny_b, settings.models_folder())
    engine = make_engine(url)
    yield settings, make_session_factory(engine)
    engine.dispose()


def promote_row(sessions: Sessions, version: str) -> None:
    """A promotion as `models promote --force` leaves it (also of a version this machine lacks)."""
    with session_scope(sessions) as session:
        session.add(ModelPromotion(model_version=version, previous_version=None, created_at=utcnow()))


def test_a_process_swaps_to_the_promoted_version_and_lets_the_old_model_go(
    deployment: tuple[Settings, Sessions],
) -> None:
    settings, sessions = deployment
    model = ModelInForce(settings)
    pixels = np.zeros((1, 64, 64, 3), dtype=np.uint8)

    first = model.current(sessions)
    assert first.classifier.version == "tiny-test" and model.current(sessions) is first
    with session_scope(sessions) as session:
        promote(session, "tiny-b", force=True)
    second = model.current(sessions)

    assert second.classifier.version == "tiny-b" and second.info.version == "tiny-b"
    assert second.classifier.predict(pixels).shape == (1,)
    with pytest.raises(RuntimeError):  # its runtime's threads are gone
        first.classifier.predict(pixels)
    # Promoting the version SKINSCREEN_MODEL names finds it there (it is neither shipped nor installed).
    with session_scope(sessions) as session:
        promote(session, "tiny-test", force=True)
    assert model.current(sessions).classifier.version == "tiny-test"
    model.close()


def test_a_promoted_version_this_machine_lacks_keeps_the_model_it_has_and_is_retried(
    deployment: tuple[Settings, Sessions], caplog: pytest.LogCaptureFixture
) -> None:
    settings, sessions = deployment
    clock = Clock()
    model = ModelInForce(settings, clock=clock)
    held = model.current(sessions)
    promote_row(sessions, "not-installed-here")

    with caplog.at_level(logging.ERROR, logger="skinscreen.worker.in_force"):
        assert model.current(sessions) is held
        clock.now += RETRY_SECONDS / 2
        assert model.current(sessions) is held
        tried = [r for r in caplog.records if "cannot be loaded here" in r.getMessage()]
        assert len(tried) == 1 and "not-installed-here" in tried[0].getMessage()
        clock.now += RETRY_SECONDS
        assert model.current(sessions) is held
        assert len([r for r in caplog.records if "cannot be loaded here" in r.getMessage()]) == 2

    promote_row(sessions, "tiny-b")  # a version it can load: taken up at once
    assert model.current(sessions).classifier.version == "tiny-b"
    model.close()


def test_a_worker_s_model_gauge_moves_to_the_version_it_swapped_to() -> None:
    metrics.heartbeat("gauge-old")
    metrics.heartbeat("gauge-new")

    def value(version: str) -> float | None:
        return REGISTRY.get_sample_value("skinscreen_worker_model_info", {"version": version})

    assert (value("gauge-old"), value("gauge-new")) == (0.0, 1.0)


def test_promote_refuses_a_version_no_worker_could_load(
    deployment: tuple[Settings, Sessions], tmp_path: Path
) -> None:
    settings, sessions = deployment
    env = {
        "SKINSCREEN_DATABASE_URL": settings.database_url,
        "SKINSCREEN_MODEL": settings.model,
        "SKINSCREEN_MODELS_DIR": str(settings.models_folder()),
    }
    loose = shutil.copytree(settings.model, tmp_path / "loose")  # a model folder never installed
    card = json.loads((loose / "card.json").read_text())
    (loose / "card.json").write_text(json.dumps({**card, "version": "loose"}))

    for version in ("not-installed-here", str(loose)):
        refused = invoke(env, "models", "promote", version, "--force", code=1)
        assert isinstance(refused.exception, ModelError), refused.output
    with session_scope(sessions) as session:
        assert promoted_version(session) is None
    assert "tiny-b from their next batch" in invoke(env, "models", "promote", "tiny-b", "--force").output


def test_the_review_server_s_metrics_and_site_pages_follow_the_promotion(world: World, tiny_b: Path) -> None:
    world.cli("models", "add", str(tiny_b))
    engine = make_engine(world.url)
    with session_scope(make_session_factory(engine)) as session:
        accounts.add_account(session, name="root", role=Role.admin, password_hash=hash_password(PASSWORD))
    engine.dispose()
    with review_client(world, Path(world.env["SKINSCREEN_MODEL"])) as (client, _):
        token = client.post("/api/token", data={"username": "root", "password": PASSWORD}).json()
        headers = {"Authorization": f"Bearer {token['access_token']}"}
        scrape = {"Authorization": f"Bearer {METRICS_TOKEN}"}
        before = _model_info(client.get("/metrics", headers=scrape).text)
        sites_before = client.get("/api/sites", headers=headers).json()
        world.cli("models", "promote", "tiny-b", "--force")
        after = _model_info(client.get("/metrics", headers=scrape).text)
        sites_after = client.get("/api/sites", headers=headers).json()
        drift_after = client.get("/api/drift", headers=headers).json()
    assert (before, after) == ("tiny-test", "tiny-b")
    assert {row["model_version"] for row in sites_before} == {"tiny-test"}
    assert {row["model_version"] for row in sites_after} == {"tiny-b"}
    assert drift_after == []  # tiny-b has scored no batch yet


def _model_info(text: str) -> str:
    family = next(f for f in text_string_to_metric_families(text) if f.name == "skinscreen_model_info")
    return str(family.samples[0].labels["version"])


def drop_promote_drop(
    env: dict[str, str], url: str, inbox: Path, tiny_b: Path, scorer: Process, others: list[Process]
) -> None:
    """Images scored by tiny-test; `models add` and `promote tiny-b --force`; the next images by tiny-b,
    each with the probability `predict` gives, the scoring process never restarted."""
    images = dataset_images("benign", 6) + dataset_images("malignant", 6)
    before, after = images[:4], images[4:]
    try:
        copy_images(before, inbox / "site-a" / "2026-12-01")
        wait_for(
            lambda: sum(r["state"] == "scored" for r in image_rows(url).values()) == len(before),
            timeout=180,
            what="the first images scored",
        )
        cli(["models", "add", str(tiny_b)], env=env)
        cli(["models", "promote", "tiny-b", "--force"], env=env)
        promoted_at = time.monotonic()
        copy_images(after, inbox / "site-a" / "2026-12-02")
        wait_for(
            lambda: sum(r["state"] == "scored" for r in image_rows(url).values()) == len(images),
            timeout=120,
            what="the images dropped after the promotion scored",
        )
        seconds = time.monotonic() - promoted_at
        assert scorer.alive(), scorer.text()[-3000:]
    finally:
        for process in [*others, scorer]:
            process.stop()

    rows = image_rows(url)
    for src in before:
        assert [v for v, _ in rows[sha256(src)]["predictions"]] == ["tiny-test"]
    expected = predict_by_sha(after, env=env, model=tiny_b)
    for src in after:
        [(version, probability)] = rows[sha256(src)]["predictions"]
        assert version == "tiny-b", src.name
        assert probability == pytest.approx(expected[sha256(src)], abs=1e-5)
    log = scorer.text()
    assert "model in force: tiny-b (was tiny-test)" in log
    # One process, each model loaded once: no restart, no reload per batch.
    assert log.count("loading model tiny-test") == 1 and log.count("loading model tiny-b") == 1, log[-3000:]
    print(f"images dropped after the promotion scored by tiny-b {seconds:.1f} s after it")


@pytest.mark.integration
def test_images_dropped_after_a_promotion_are_scored_by_it_without_a_restart(
    pg_url: str, redis_url: str, tiny_model: Path, tiny_b: Path, tmp_path: Path
) -> None:
    env = env_for(
        database_url=pg_url,
        broker_url=redis_url,
        model=tiny_model,
        models_dir=tmp_path / "models",
        settle_seconds=1.0,
        batch_size=4,
        batch_wait=1.0,
        threads=1,
    )
    cli(["db", "upgrade"], env=env)
    inbox = tmp_path / "inbox"
    worker = Process(["worker", "--concurrency", "1"], env=env, log=tmp_path / "worker.log")
    ingester = Process(["ingest", str(inbox)], env=env, log=tmp_path / "ingest.log")
    drop_promote_drop(env, pg_url, inbox, tiny_b, worker, [ingester])


def test_the_embedded_run_scores_images_dropped_after_a_promotion_with_it(
    tiny_model: Path, tiny_b: Path, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'skinscreen.db'}"
    env = env_for(
        database_url=url,
        model=tiny_model,
        models_dir=tmp_path / "models",
        settle_seconds=1.0,
        batch_size=4,
        batch_wait=1.0,
        threads=1,
    )
    cli(["db", "upgrade"], env=env)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    run = Process(["-v", "run", str(inbox)], env=env, log=tmp_path / "run.log")  # -v: the worker lines
    drop_promote_drop(env, url, inbox, tiny_b, run, [])
