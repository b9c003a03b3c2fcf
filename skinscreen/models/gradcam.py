"""Grad-CAM heatmaps: which part of an image raised the model's malignant score.

The network is Input -> Rescaling -> MobileNetV2 base (a nested keras.Model) -> pooling -> Dropout ->
Dense(sigmoid). `GradCam` runs those layers in order inside a `tf.GradientTape`, taking the base's
last activations (layer `out_relu`, 7x7x1280 at 224 pixels) on the way, and differentiates the
malignant *logit* (the Dense layer before its sigmoid): the probability saturates near 0 and 1, where
its gradients vanish and the map turns to noise. Each channel is weighted by its mean gradient, the
weighted sum goes through a ReLU (only evidence *for* malignancy), is upsampled bilinearly to the
input size and scaled to 0..1 by its maximum (an all-zero map stays zero).

With test-time views (`tta`, as in `preprocess.tta_views`), the map is the mean of the maps of the
flipped and transposed views, each turned back to the original orientation: the same views the
score averages over.

This module imports TensorFlow and Keras inside functions, and never SQLAlchemy or a web framework.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from skinscreen.errors import ModelError
from skinscreen.models.preprocess import resize_pixels, tta_views

logger = logging.getLogger(__name__)

CONV_LAYER = "out_relu"
"""The base's last activation layer (MobileNetV2 names it out_relu at every width and size)."""

CHUNK = 8
"""Images per gradient pass: a tape over MobileNetV2 at 224 pixels holds about 100 MB per image."""

Heatmap = npt.NDArray[np.float32]


class GradCam:
    """A loaded Keras classifier split at the base's last activations, ready to explain batches."""

    def __init__(self, model: Any, *, conv_layer: str = CONV_LAYER) -> None:
        import keras

        layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
        nested = [i for i, layer in enumerate(layers) if isinstance(layer, keras.Model)]
        if len(nested) != 1:
            raise ModelError(f"Grad-CAM expects one nested base model, found {len(nested)}")
        index = nested[0]
        base = layers[index]
        try:
            conv = base.get_layer(conv_layer)
        except ValueError as exc:
            raise ModelError(f"the base model {base.name!r} has no layer {conv_layer!r}") from exc
        self.input_size = int(model.inputs[0].shape[1])
        self._before = layers[:index]
        # Both outputs come from one call, so the gradient flows through any base layers after `conv`.
        self._base = keras.Model(base.inputs, [conv.output, base.outputs[0]])
        self._after = layers[index + 1 :]
        if not self._after:
            raise ModelError("Grad-CAM expects a classification head after the base model")

    def _logit(self, features: Any) -> Any:
        import keras

        head, last = self._after[:-1], self._after[-1]
        for layer in head:
            features = layer(features, training=False)
        if isinstance(last, keras.layers.Dense) and last.activation is keras.activations.sigmoid:
            return keras.ops.matmul(features, last.kernel) + last.bias
        return last(features, training=False)

    def _raw_maps(self, batch: npt.NDArray[Any]) -> Heatmap:
        """Unnormalised Grad-CAM maps at the input size, one per image."""
        import tensorflow as tf

        x = tf.convert_to_tensor(np.asarray(batch, dtype=np.float32))
        with tf.GradientTape() as tape:
            for layer in self._before:
                x = layer(x, training=False)
            conv, features = self._base(x, training=False)
            tape.watch(conv)
            logit = tf.reduce_sum(self._logit(features))
        grads = tape.gradient(logit, conv)
        if grads is None:
            raise ModelError("the model output does not depend on the base's activations")
        weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
        cams = tf.nn.relu(tf.reduce_sum(weights * conv, axis=-1, keepdims=True))
        size = (self.input_size, self.input_size)
        up = tf.image.resize(cams, size, method="bilinear")
        return np.asarray(up.numpy()[..., 0], dtype=np.float32)

    def explain(self, batch: npt.NDArray[Any], *, tta: str = "none") -> Heatmap:
        """(N, s, s, 3) pixels in 0..255 -> (N, s, s) heatmaps in 0..1."""
        s = self.input_size
        if batch.ndim != 4 or batch.shape[1:] != (s, s, 3):
            raise ModelError(f"expected (N, {s}, {s}, 3), got {batch.shape}")
        n = len(batch)
        if n == 0:
            return np.zeros((0, s, s), dtype=np.float32)
        views = tta_views(batch, tta)
        maps = np.concatenate([self._raw_maps(views[i : i + CHUNK]) for i in range(0, len(views), CHUNK)])
        if tta != "none":
            maps = _undo_views(maps, n=n, size=s, mode=tta)
        return _normalise(maps)

    def explain_pixels(self, pixels: npt.NDArray[np.uint8], *, tta: str = "none") -> Heatmap:
        """One (H, W, 3) uint8 image -> its (s, s) heatmap (resized as for scoring)."""
        model_input = resize_pixels(pixels, size=self.input_size)
        heatmap: Heatmap = self.explain(model_input[np.newaxis], tta=tta)[0]
        return heatmap


def load_gradcam(model_dir: Path) -> GradCam:
    """Load `model.keras` from a model directory (the ONNX file has no gradients)."""
    from skinscreen.models.layers import load_keras_model

    path = model_dir / "model.keras"
    if not path.exists():
        raise ModelError(f"{model_dir} has no model.keras, which Grad-CAM needs")
    logger.info("loading %s for Grad-CAM", path)
    return GradCam(load_keras_model(path))


def _undo_views(maps: Heatmap, *, n: int, size: int, mode: str) -> Heatmap:
    """Average the k*N view maps (view-major) after turning each back to the original orientation."""
    # Sending pixel indices through the same views tells where each view pixel came from.
    index = np.arange(size * size).reshape(1, size, size, 1)
    sources = tta_views(index, mode)[..., 0].reshape(-1, size * size)
    k = len(sources)
    views = maps.reshape(k, n, size * size)
    out = np.zeros((n, size * size), dtype=np.float64)
    for view, source in zip(views, sources, strict=True):
        restored = np.empty_like(view)
        restored[:, source] = view
        out += restored
    return np.asarray((out / k).reshape(n, size, size), dtype=np.float32)


def _normalise(maps: Heatmap) -> Heatmap:
    peak = maps.reshape(len(maps), -1).max(axis=1).reshape(-1, 1, 1)
    scaled = np.divide(maps, peak, out=np.zeros_like(maps), where=peak > 0)
    return np.asarray(np.clip(scaled, 0.0, 1.0), dtype=np.float32)


def centre_share(heatmap: Heatmap) -> float | None:
    """Share of the map's mass inside the centred square covering half the area (uniform: about 0.5).

    None for an all-zero map, which has no mass to share.
    """
    h, w = heatmap.shape
    total = float(heatmap.sum())
    if total <= 0:
        return None
    half_h, half_w = h / np.sqrt(2) / 2, w / np.sqrt(2) / 2
    ys = np.abs(np.arange(h) + 0.5 - h / 2) <= half_h
    xs = np.abs(np.arange(w) + 0.5 - w / 2) <= half_w
    return float(heatmap[np.ix_(ys, xs)].sum()) / total


def resize_heatmap(heatmap: Heatmap, *, width: int, height: int) -> Heatmap:
    """Bilinear resize of a 0..1 map to (height, width)."""
    if heatmap.shape == (height, width):
        return heatmap
    im = Image.fromarray(np.asarray(heatmap, dtype=np.float32))
    resized = im.resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(np.clip(np.asarray(resized), 0.0, 1.0), dtype=np.float32)


def colourise(heatmap: Heatmap, *, cmap: str = "jet") -> npt.NDArray[np.uint8]:
    """A 0..1 map as (H, W, 3) uint8 colours (matplotlib colour map; no pyplot)."""
    from matplotlib import colormaps

    rgba = colormaps[cmap](np.clip(heatmap, 0.0, 1.0))
    return np.asarray(np.rint(rgba[..., :3] * 255), dtype=np.uint8)


def overlay(
    pixels: npt.NDArray[np.uint8], heatmap: Heatmap, *, strength: float = 0.6
) -> npt.NDArray[np.uint8]:
    """Draw the map over the image: colour weighted by heat, so cold areas keep the image as it is."""
    h, w = pixels.shape[:2]
    heat = resize_heatmap(heatmap, width=w, height=h)
    alpha = (strength * heat)[..., np.newaxis]
    blended = pixels.astype(np.float32) * (1 - alpha) + colourise(heat).astype(np.float32) * alpha
    return np.asarray(np.clip(np.rint(blended), 0, 255), dtype=np.uint8)
