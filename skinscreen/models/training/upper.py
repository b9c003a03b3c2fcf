"""Fine-tune the upper blocks on cached activations: block 16, the last 1x1 convolution and the head.

The cache (featurecache) keeps the frozen backbone's activations after block 15 (7x7x160 at
224 px) for every copy of every image. Training from there skips the lower blocks, which hold
about 85 % of MobileNetV2's multiply-adds, so an epoch costs a fraction of a full fine-tuning
epoch. BatchNorm stays in inference mode with ImageNet's statistics, as in the shipped recipe.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from skinscreen.models.training.featurecache import MAP_LAYER, backbone


def build_upper(
    *, backbone_weights: Path | None, size: int = 224, alpha: float = 1.0, dropout: float = 0.4, seed: int = 0
) -> Any:
    """Block-15 activations -> block 16, Conv_1 (ImageNet weights, BatchNorm frozen) -> pooled -> sigmoid."""
    import keras

    keras.utils.set_random_seed(seed)
    base = backbone(backbone_weights=backbone_weights, size=size, alpha=alpha)
    inner = keras.Model(base.get_layer(MAP_LAYER).output, base.output, name="upper_blocks")
    for layer in inner.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    inputs = keras.Input(tuple(inner.inputs[0].shape[1:]), name="block15")
    x = keras.layers.GlobalAveragePooling2D()(inner(inputs, training=False))
    x = keras.layers.Dropout(dropout)(x)
    outputs = keras.layers.Dense(1, activation="sigmoid")(x)
    return keras.Model(inputs, outputs, name="upper")


def fit_upper(
    model: Any,
    maps: np.ndarray,
    labels: np.ndarray,
    weights: np.ndarray,
    *,
    epochs: int = 3,
    lr: float = 1e-4,
    batch_size: int = 64,
    label_smoothing: float = 0.05,
    seed: int = 0,
) -> Any:
    """Adam on a cosine decay, weighted cross-entropy with label smoothing; returns the Keras history."""
    import keras

    steps = epochs * int(np.ceil(len(maps) / batch_size))
    model.compile(
        optimizer=keras.optimizers.Adam(
            keras.optimizers.schedules.CosineDecay(lr, decay_steps=steps, alpha=0.01)
        ),
        loss=keras.losses.BinaryCrossentropy(label_smoothing=label_smoothing),
    )
    order = np.random.default_rng(seed).permutation(len(maps))
    return model.fit(
        maps[order].astype("float32"),
        labels[order].astype("float32"),
        sample_weight=weights[order].astype("float32"),
        epochs=epochs,
        batch_size=batch_size,
        shuffle=True,
        verbose=0,
    )


def predict_upper(model: Any, maps: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
    """Probabilities for cached block-15 activations."""
    return np.asarray(model.predict(maps.astype("float32"), batch_size=batch_size, verbose=0)).ravel()
