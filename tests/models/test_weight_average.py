"""The training callback that keeps the best epoch and averages the last epochs' weights."""

from __future__ import annotations

from typing import Any

import numpy as np

from skinscreen.models.training.train import _Snapshots


def test_the_average_is_the_mean_of_the_last_epochs_and_the_best_epoch_is_kept() -> None:
    import keras

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("float32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(
        optimizer=keras.optimizers.SGD(0.5),
        loss="binary_crossentropy",
        metrics=[keras.metrics.AUC(name="auc")],
    )
    seen: list[list[np.ndarray]] = []
    aucs: list[float] = []

    class Record(keras.callbacks.Callback):  # type: ignore[misc]
        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            seen.append([w.copy() for w in self.model.get_weights()])
            aucs.append(float((logs or {})["val_auc"]))

    snapshots = _Snapshots(average_from=2)
    model.fit(
        x, y, validation_data=(x, y), epochs=5, batch_size=8, verbose=0, callbacks=[Record(), snapshots]
    )

    assert snapshots.averaged == 3
    for averaged, *per_epoch in zip(snapshots.average, *seen[2:], strict=True):
        np.testing.assert_allclose(averaged, np.mean(per_epoch, axis=0), rtol=1e-6, atol=1e-7)
        assert averaged.dtype == np.float32
    best = int(np.argmax(aucs))
    assert snapshots.best_epoch == best
    for kept, recorded in zip(snapshots.best_weights, seen[best], strict=True):
        np.testing.assert_array_equal(kept, recorded)
    assert not np.allclose(seen[2][0], seen[4][0])  # the weights did move, so the mean means something
