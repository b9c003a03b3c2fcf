"""Grad-CAM on the tiny MobileNetV2: shape, range, test-time views, centre share and the overlay."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from skinscreen.errors import ModelError
from skinscreen.models.gradcam import GradCam, _undo_views, centre_share, load_gradcam, overlay
from skinscreen.models.preprocess import tta_views


@pytest.fixture(scope="module")
def gradcam(tiny_model: Path) -> GradCam:
    return load_gradcam(tiny_model)


def pixels(n: int, size: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3)).astype(np.float32)


@pytest.mark.parametrize("tta", ["none", "dihedral8"])
def test_heatmaps_have_the_input_size_and_lie_in_0_to_1(gradcam: GradCam, tta: str) -> None:
    maps = gradcam.explain(pixels(3), tta=tta)

    assert maps.shape == (3, 64, 64) and maps.dtype == np.float32
    assert np.isfinite(maps).all()
    assert maps.min() >= 0.0 and maps.max() <= 1.0
    assert all(m.max() in (0.0, 1.0) for m in maps)  # scaled by its peak, or all zero


def test_one_image_of_any_size_gets_a_map_at_the_input_size(gradcam: GradCam) -> None:
    image = np.random.default_rng(1).integers(0, 256, (120, 90, 3)).astype(np.uint8)

    assert gradcam.explain_pixels(image).shape == (64, 64)


def test_a_batch_of_the_wrong_shape_is_refused(gradcam: GradCam) -> None:
    with pytest.raises(ModelError):
        gradcam.explain(pixels(1, size=32))


def test_a_model_without_a_nested_base_is_refused() -> None:
    import keras

    inputs = keras.Input((8, 8, 3))
    flat = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(keras.layers.Flatten()(inputs)))

    with pytest.raises(ModelError, match="nested base"):
        GradCam(flat)


@pytest.mark.parametrize("mode", ["flip4", "dihedral8"])
def test_view_maps_are_turned_back_to_the_original_orientation(mode: str) -> None:
    original = np.random.default_rng(2).random((2, 16, 16)).astype(np.float32)
    views = tta_views(original[..., np.newaxis], mode)[..., 0]

    restored = _undo_views(views, n=2, size=16, mode=mode)

    np.testing.assert_allclose(restored, original, rtol=1e-6)


def test_the_centre_share_of_a_uniform_map_is_about_a_half() -> None:
    uniform = np.ones((224, 224), np.float32)
    blob = np.zeros((224, 224), np.float32)
    blob[92:132, 92:132] = 1.0

    assert centre_share(uniform) == pytest.approx(0.5, abs=0.01)
    assert centre_share(blob) == 1.0
    assert centre_share(np.zeros((8, 8), np.float32)) is None


def test_the_overlay_keeps_cold_pixels_and_colours_hot_ones() -> None:
    image = np.full((30, 40, 3), 128, np.uint8)
    heat = np.zeros((8, 8), np.float32)
    heat[4:, 4:] = 1.0

    drawn = overlay(image, heat)

    assert drawn.shape == image.shape and drawn.dtype == np.uint8
    assert (drawn[:10, :10] == 128).all()
    assert not (drawn[-5:, -5:] == 128).all()
