"""Site-neutral training: class weights within each source, epochs kept by mean per-source AUC."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from skinscreen.cli import cli
from skinscreen.models.training.metrics import roc_auc
from skinscreen.models.training.network import RECIPES
from skinscreen.models.training.train import _Snapshots, balanced_within_sources, mean_source_auc
from tests.conftest import WEIGHTS, dataset_images


def test_weights_balance_the_classes_within_each_source_and_keep_each_source_share() -> None:
    # Source a: 3 benign, 1 malignant; source b: 1 benign, 3 malignant (by hand: n_s / (2 n_sc)).
    labels = np.asarray([0, 0, 0, 1, 0, 1, 1, 1])
    sources = np.asarray(["a"] * 4 + ["b"] * 4)
    weights = balanced_within_sources(labels, sources)
    np.testing.assert_allclose(weights, [4 / 6, 4 / 6, 4 / 6, 2, 2, 4 / 6, 4 / 6, 4 / 6])
    for name in ("a", "b"):
        own = sources == name
        assert weights[own & (labels == 1)].sum() == weights[own & (labels == 0)].sum()
        assert weights[own].sum() == own.sum()
    # Pooled class weights would leave source b's malignant images 3x its benign ones.
    pooled = {c: len(labels) / (2 * np.sum(labels == c)) for c in (0, 1)}
    assert pooled[0] == pooled[1] == 1.0


def test_with_one_source_the_weights_are_the_pooled_class_weights() -> None:
    labels = np.asarray([0] * 6 + [1] * 2)
    weights = balanced_within_sources(labels, np.asarray(["only"] * 8))
    np.testing.assert_allclose(weights, [8 / 12] * 6 + [8 / 4] * 2)


def test_the_mean_of_per_source_aucs_does_not_reward_telling_sources_apart() -> None:
    # Within each source the scores rank one malignant below one benign (AUC 0.75 each), but source
    # b (mostly malignant) scores higher overall, which the pooled AUC rewards.
    labels = np.asarray([0, 0, 1, 1, 0, 1, 1, 1])
    sources = np.asarray(["a"] * 4 + ["b"] * 4)
    probs = np.asarray([0.1, 0.3, 0.2, 0.4, 0.7, 0.6, 0.8, 0.9])
    assert mean_source_auc(labels, probs, sources) == pytest.approx((0.75 + 2 / 3) / 2)
    assert roc_auc(labels.astype(bool), probs) > mean_source_auc(labels, probs, sources)


def test_the_callback_keeps_the_epoch_its_score_prefers() -> None:
    import keras

    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(32, 3)).astype("float32")
    y = (x[:, 0] > 0).astype("float32")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="binary_crossentropy")
    preferred = [0.2, 0.9, 0.5]  # the score says epoch 2, whatever Keras' own metrics say

    def score(m: object) -> float:
        return preferred[len(snapshots.scores)]

    snapshots = _Snapshots(average_from=None, score=score)
    model.fit(x, y, epochs=3, batch_size=8, verbose=0, callbacks=[snapshots])
    assert snapshots.scores == preferred and snapshots.best_epoch == 1
    assert snapshots.best_weights is not None


def test_the_site_neutral_recipes_differ_from_twosite_plain_only_by_site_neutrality() -> None:
    plain, neutral = RECIPES["twosite-plain"].as_dict(), RECIPES["twosite-neutral"].as_dict()
    differing = {k for k in plain if plain[k] != neutral[k]}
    assert differing == {"name", "site_neutral", "notes"}
    more, neutral_more = RECIPES["twosite-plain-more"].as_dict(), RECIPES["twosite-neutral-more"].as_dict()
    assert {k for k in more if more[k] != neutral_more[k]} == {"name", "site_neutral", "notes"}


@pytest.mark.slow
def test_a_site_neutral_run_keeps_the_epoch_by_the_mean_of_per_source_aucs(tmp_path: Path) -> None:
    """A real (tiny) training run: weights per image go through tf.data, and the score recorded per
    fine-tuning epoch is the mean of the kept model's per-source validation AUCs."""
    if not WEIGHTS.exists():
        pytest.skip(f"ImageNet weights not found at {WEIGHTS}")
    data, other = tmp_path / "data", tmp_path / "site-b"
    for label, n_main, n_other in (("benign", 10, 4), ("malignant", 6, 8)):  # unlike malignant shares
        (data / "train" / label).mkdir(parents=True)
        (other / label).mkdir(parents=True)
        images = dataset_images(label, n_main + n_other, split="train")
        for src in images[:n_main]:
            shutil.copy(src, data / "train" / label / src.name)
        for src in images[n_main:]:
            shutil.copy(src, other / label / src.name)
    out = tmp_path / "run"
    args = ["train", str(data), "--out", str(out), "--recipe", "twosite-neutral", "--extra", str(other)]
    args += ["--size", "64", "--backbone-weights", str(WEIGHTS), "--epochs-scale", "0.01"]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    run = json.loads((out / "run.json").read_text())
    assert run["recipe"]["site_neutral"] is True
    assert run["epochs"] == {"head": 1, "finetune": 1, "kept": 2}
    by_source = [s["roc_auc"] for s in run["validation_by_source"].values()]
    assert len(by_source) == 2
    assert run["finetune_mean_source_auc"] == [pytest.approx(float(np.mean(by_source)))]
