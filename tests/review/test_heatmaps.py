"""Heatmaps explain the score the reviewer sees: the stored model version, the scored pixels, one decode."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import delete

from skinscreen.db.session import make_engine, make_session_factory, session_scope
from skinscreen.db.tables import Image as ImageRow
from skinscreen.db.tables import Prediction
from skinscreen.images import read_image
from skinscreen.models.gradcam import load_gradcam
from skinscreen.models.preprocess import resize_pixels
from skinscreen.review import create_app
from tests.conftest import build_tiny_model
from tests.review.conftest import Seeded, review_settings, seed_database, token_for

SECOND = "tiny-test-2"
GONE = "retired-model-1"


@pytest.fixture(scope="module")
def second_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another tiny model with its own input size (96), so its pixels and its maps differ from tiny-test's."""
    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny2", size=96, version=SECOND, onnx=False)


def rescore(url: str, image_id: int, version: str) -> None:
    """`image_id`'s shown prediction becomes another model version's.

    The tiny-test prediction is removed: reviewers see an image's first prediction until a version is
    promoted (`skinscreen models promote`), and the case here must be the other version's.
    """
    engine = make_engine(url)
    with session_scope(make_session_factory(engine)) as session:
        session.execute(delete(Prediction).where(Prediction.image_id == image_id))
        session.add(
            Prediction(image_id=image_id, model_version=version, probability=0.9, flagged=True, threshold=0.5)
        )
    engine.dispose()


@pytest.fixture
def two_models(
    tmp_path: Path, tiny_model: Path, second_model: Path
) -> Iterator[tuple[TestClient, Seeded, dict[str, str]]]:
    """Cases scored by tiny-test, one by tiny-test-2 instead and one by a model this server lacks."""
    seeded = seed_database(f"sqlite:///{tmp_path / 's.db'}", tmp_path)
    rescore(seeded.url, seeded.ids["a1"], SECOND)
    rescore(seeded.url, seeded.ids["a2"], GONE)
    settings = review_settings(seeded.url, tmp=tmp_path, model=tiny_model).model_copy(
        update={"heatmap_models": [str(second_model)]}
    )
    with TestClient(create_app(settings)) as client:
        yield client, seeded, token_for(client, "alice")


def path_of(url: str, image_id: int) -> Path:
    engine = make_engine(url)
    with session_scope(make_session_factory(engine)) as session:
        row = session.get(ImageRow, image_id)
        assert row is not None
        path = Path(row.path)
    engine.dispose()
    return path


def stored_map(client: TestClient, version: str) -> np.ndarray:
    store = client.app.state.review.images.heatmaps  # type: ignore[attr-defined]
    (found,) = (store.folder / version).glob("*.png")
    return np.asarray(Image.open(found), dtype=np.float32) / 255


def scored_pixels(path: Path, size: int) -> np.ndarray:
    """What a scorer with this input size sees: decoded with draft size `size`, then resized."""
    return resize_pixels(read_image(path, draft_size=size).pixels, size=size)


def test_the_heatmap_comes_from_the_model_version_that_scored_the_case(
    two_models: tuple[TestClient, Seeded, dict[str, str]], tiny_model: Path, second_model: Path
) -> None:
    client, seeded, alice = two_models
    case = seeded.ids["a1"]
    path = path_of(seeded.url, case)

    response = client.get(f"/api/cases/{case}/heatmap.png", headers=alice, params={"size": 64})

    assert response.status_code == 200, response.text
    assert response.headers["x-model-version"] == SECOND
    served = stored_map(client, SECOND)
    expected = load_gradcam(second_model).explain_pixels(scored_pixels(path, 96))
    current_model = load_gradcam(tiny_model).explain_pixels(scored_pixels(path, 64))
    assert served.shape == (96, 96)
    assert np.abs(served - expected).max() <= 1 / 255 + 1e-6
    assert current_model.shape != served.shape  # SKINSCREEN_MODEL's map is not the one served
    other = client.get(f"/api/cases/{seeded.ids['a3']}/heatmap.png", headers=alice, params={"size": 64})
    assert other.headers["x-model-version"] == "tiny-test"


def test_a_case_scored_by_a_model_not_on_the_server_gets_no_other_models_map(
    two_models: tuple[TestClient, Seeded, dict[str, str]],
) -> None:
    client, seeded, alice = two_models
    case = seeded.ids["a2"]

    response = client.get(f"/api/cases/{case}/heatmap.png", headers=alice)
    unscored = client.get(f"/api/cases/{seeded.ids['a6']}/heatmap.png", headers=alice)

    assert response.status_code == 404
    assert GONE in response.json()["detail"] and "not available" in response.json()["detail"]
    assert unscored.status_code == 404
    store = client.app.state.review.images.heatmaps  # type: ignore[attr-defined]
    assert not list(store.folder.glob("*/*.png"))
    from tests.review.test_api import page_login

    page_login(client, "alice")
    page = client.get(f"/cases/{case}").text
    assert f"the model that scored this case ({GONE}) is not available on this server" in page
    assert 'id="heatmap"' not in page


def test_a_case_view_decodes_its_file_once(two_models: tuple[TestClient, Seeded, dict[str, str]]) -> None:
    client, seeded, alice = two_models
    images = client.app.state.review.images  # type: ignore[attr-defined]

    def view(case: int) -> int:
        before = images.decodes
        for what in ("image", "heatmap"):
            response = client.get(f"/api/cases/{case}/{what}.png", headers=alice, params={"size": 200})
            assert response.status_code == 200, response.text
            Image.open(io.BytesIO(response.content)).verify()
        return int(images.decodes - before)

    assert view(seeded.ids["b1"]) == 1  # DICOM: one decode serves display and Grad-CAM
    assert view(seeded.ids["a3"]) == 2  # JPEG, map not made yet: a second decode at the scoring draft size
    images._decoded.clear()
    assert view(seeded.ids["a3"]) == 1  # map cached: one decode for image and overlay
