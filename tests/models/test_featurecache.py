from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from skinscreen.models.training.dataset import load_pixels
from skinscreen.models.training.featurecache import (
    build_extractor,
    cache_source,
    centre_squash,
    keras_extract,
    load_source,
    save_source,
)
from tests.conftest import WEIGHTS, copy_images, dataset_images

# The real ImageNet backbone at a small input: random weights give features near 1e-11, which
# float16 would flush to zero.
SIZE = 96


def test_centre_squash_keeps_the_middle_three_quarters_of_the_width() -> None:
    batch = np.full((1, 4, 8, 3), 100, dtype=np.uint8)
    batch[:, :, 0] = batch[:, :, 7] = 255  # the outer eighth on each side is cut off

    squashed = centre_squash(batch)

    assert squashed.shape == batch.shape
    assert (squashed == 100).all()


def test_centre_squash_stretches_the_kept_columns_across_the_width() -> None:
    batch = np.zeros((1, 2, 8, 3), dtype=np.uint8)
    batch[:, :, 1:4] = 200  # left half of the kept columns 1..6

    squashed = centre_squash(batch)

    assert (squashed[:, :, :3] == 200).all() and (squashed[:, :, 5:] == 0).all()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hospital")
    copy_images(dataset_images("benign", 3), root / "benign")
    copy_images(dataset_images("malignant", 2), root / "malignant")
    return root


@pytest.fixture(scope="module")
def extractor() -> Iterator[Any]:
    if not WEIGHTS.is_file():
        pytest.skip(f"ImageNet weights not found at {WEIGHTS}")
    yield build_extractor(backbone_weights=WEIGHTS, size=SIZE)


def test_copy_zero_is_the_image_as_scored_and_the_geometry_copy_its_centre_squash(
    folder: Path, extractor: Any
) -> None:
    kinds = ("plain", "augment", "geometry")
    source = cache_source(
        folder,
        name="site",
        extract=keras_extract(extractor),
        full_frame=True,
        kinds=kinds,
        size=SIZE,
        batch_size=2,
    )
    files = sorted((folder / "benign").iterdir()) + sorted((folder / "malignant").iterdir())
    pixels = load_pixels(files, size=SIZE)
    pooled, maps = extractor.predict_on_batch(pixels.astype("float32"))
    squashed, _ = extractor.predict_on_batch(centre_squash(pixels).astype("float32"))

    assert source.pooled.shape == (3, 5, pooled.shape[1]) and source.pooled.dtype == np.float16
    assert source.maps is not None and source.maps.shape == (3, 5, *maps.shape[1:])
    np.testing.assert_allclose(source.pooled[0], pooled, rtol=1e-2, atol=1e-2)
    np.testing.assert_allclose(source.pooled[2], squashed, rtol=1e-2, atol=1e-2)
    assert not np.allclose(source.pooled[1], pooled, rtol=1e-2, atol=1e-2)  # randomly augmented
    assert not np.allclose(source.pooled[2], pooled, rtol=1e-2, atol=1e-2)
    assert source.labels.tolist() == [0, 0, 0, 1, 1]
    assert source.paths[0].startswith("benign/") and source.paths[-1].startswith("malignant/")
    assert source.copy_kinds == list(kinds)


def test_by_default_a_full_frame_source_gets_a_geometry_copy_and_a_cropped_one_none(
    folder: Path, extractor: Any
) -> None:
    extract = keras_extract(extractor)

    full = cache_source(folder, name="a", extract=extract, full_frame=True, size=SIZE)
    cropped = cache_source(folder, name="b", extract=extract, full_frame=False, size=SIZE)

    assert full.copy_kinds == ["plain", "geometry"] and full.pooled.shape[0] == 2
    assert cropped.copy_kinds == ["plain"] and cropped.pooled.shape[0] == 1


def test_a_saved_cache_loads_back_the_same(folder: Path, extractor: Any, tmp_path: Path) -> None:
    source = cache_source(folder, name="site", extract=keras_extract(extractor), full_frame=False, size=SIZE)

    save_source(source, out=tmp_path)
    back = load_source(tmp_path, "site", maps=True)
    light = load_source(tmp_path, "site")

    np.testing.assert_array_equal(back.pooled, source.pooled)
    assert back.maps is not None and source.maps is not None
    np.testing.assert_array_equal(back.maps, source.maps)
    assert light.maps is None
    assert (back.paths, back.full_frame, back.copy_kinds) == (source.paths, False, ["plain"])


def test_the_onnx_extractor_gives_the_keras_features(folder: Path, extractor: Any, tmp_path: Path) -> None:
    from skinscreen.models.training.featurecache import onnx_extract

    pixels = load_pixels(sorted((folder / "benign").iterdir()), size=SIZE).astype("float32")
    keras_pooled, keras_maps = keras_extract(extractor)(pixels)

    onnx_pooled, onnx_maps = onnx_extract(extractor, path=tmp_path / "extractor.onnx", threads=1)(pixels)

    assert onnx_maps is not None and keras_maps is not None
    np.testing.assert_allclose(onnx_pooled, keras_pooled, atol=1e-3)
    np.testing.assert_allclose(onnx_maps, keras_maps, atol=1e-3)
