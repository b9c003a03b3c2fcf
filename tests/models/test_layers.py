"""The Shades of Gray layer: the same transform as its NumPy form, saved and loaded with the model."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def test_shades_of_gray_greys_the_illuminant_and_survives_a_save(tmp_path: Path) -> None:
    import keras

    from skinscreen.models.layers import ShadesOfGray, shades_of_gray

    rng = np.random.default_rng(0)
    base = rng.uniform(40, 200, (2, 16, 16, 3))
    tinted = np.clip(base * np.array([1.3, 1.0, 0.7]), 0, 255).astype("float32")  # a warm lamp
    inputs = keras.Input((16, 16, 3))
    model = keras.Model(inputs, ShadesOfGray(6.0)(inputs))
    out = np.asarray(model(tinted))
    np.testing.assert_allclose(out, shades_of_gray(tinted), atol=1e-3)
    p6 = np.mean((out / 255.0) ** 6, axis=(1, 2)) ** (1 / 6)
    assert np.allclose(p6, p6.mean(axis=-1, keepdims=True), rtol=1e-3)  # the illuminant is now grey
    before = np.mean((tinted / 255.0) ** 6, axis=(1, 2)) ** (1 / 6)
    assert not np.allclose(before, before.mean(axis=-1, keepdims=True), rtol=1e-2)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras", compile=False)
    np.testing.assert_allclose(np.asarray(loaded(tinted)), out, atol=1e-5)
