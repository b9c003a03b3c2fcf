"""Keras layers that are part of a shipped network, so training, scoring and Grad-CAM share them.

Colour constancy lives inside the model rather than in a preprocessing function: every runtime
(Keras, ONNX Runtime, the int8 copy) and Grad-CAM then apply it identically, and a model trained
without it (the first shipped model) keeps its own contract. Importing this module registers the
layers with Keras, which `keras.models.load_model` needs.
"""

from __future__ import annotations

from typing import Any

import keras


@keras.saving.register_keras_serializable(package="skinscreen")
class ShadesOfGray(keras.layers.Layer):  # type: ignore[misc]
    """Shades of Gray colour constancy (Finlayson and Trezzi, 2004) on 0..255 RGB batches.

    The illuminant of each image is estimated per channel as the Minkowski p-norm mean of its
    pixels; each channel is then scaled so that the illuminant becomes grey, keeping the image's
    overall brightness. p=6 is the value used for dermoscopy by Barata et al. (2015) and by most
    ISIC challenge entries.
    """

    def __init__(self, power: float = 6.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.power = float(power)

    def call(self, inputs: Any) -> Any:
        ops = keras.ops
        x = ops.clip(inputs / 255.0, 0.0, 1.0)
        illuminant = ops.power(
            ops.mean(ops.power(x, self.power), axis=(1, 2), keepdims=True), 1.0 / self.power
        )
        illuminant = ops.maximum(illuminant, 1e-6)
        gain = ops.mean(illuminant, axis=-1, keepdims=True) / illuminant
        return ops.clip(x * gain, 0.0, 1.0) * 255.0

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "power": self.power}


def shades_of_gray(pixels: Any, *, power: float = 6.0) -> Any:
    """The same transform in NumPy, for tests and for looking at what the network sees."""
    import numpy as np

    x = np.clip(np.asarray(pixels, dtype=np.float64) / 255.0, 0.0, 1.0)
    illuminant = np.maximum(np.mean(x**power, axis=(-3, -2), keepdims=True) ** (1.0 / power), 1e-6)
    gain = illuminant.mean(axis=-1, keepdims=True) / illuminant
    return np.clip(x * gain, 0.0, 1.0) * 255.0


def load_keras_model(path: Any) -> Any:
    """`keras.models.load_model` without the optimizer, with this module's layers registered."""
    return keras.models.load_model(path, compile=False)
