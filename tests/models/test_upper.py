from __future__ import annotations

import numpy as np

from skinscreen.models.training.upper import build_upper, fit_upper, predict_upper


def test_fine_tuning_on_cached_maps_trains_the_upper_convolutions_and_leaves_batchnorm_alone() -> None:
    model = build_upper(backbone_weights=None, size=96, alpha=0.35)
    inner = model.get_layer("upper_blocks")
    shape = tuple(model.inputs[0].shape[1:])
    rng = np.random.default_rng(0)
    maps = rng.normal(0, 1, (24, *shape)).astype("float16")
    labels = np.r_[np.zeros(12), np.ones(12)]
    conv = inner.get_layer("Conv_1").get_weights()[0].copy()
    bn = [w.copy() for w in inner.get_layer("Conv_1_bn").get_weights()]

    fit_upper(model, maps, labels, np.ones(24), epochs=2, batch_size=8, lr=1e-2)
    probs = predict_upper(model, maps)

    assert shape == (3, 3, 56)  # block 15's output at 96 px, width 0.35
    assert probs.shape == (24,) and ((probs > 0) & (probs < 1)).all()
    assert not np.allclose(inner.get_layer("Conv_1").get_weights()[0], conv)
    for before, after in zip(bn, inner.get_layer("Conv_1_bn").get_weights(), strict=True):
        np.testing.assert_array_equal(before, after)
