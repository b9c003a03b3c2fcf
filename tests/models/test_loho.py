from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from skinscreen.models.training.featurecache import CachedSource, save_source
from skinscreen.models.training.loho import (
    LEVERS,
    copy_indices,
    fit_head,
    hospital_balanced,
    kept,
    leave_one_out,
    trained_on,
    training_rows,
)

NAMES = ["skin-cancer-mvb", "skin-cancer-bcn", "ham10000-rosendahl", "ham10000-vidir-modern"]


def source(name: str, *, n: int, malignant: int, seed: int) -> CachedSource:
    """A hospital whose feature 0 tells malignant from benign, plus noise and a hospital offset."""
    rng = np.random.default_rng(seed)
    kinds = ["plain", "augment"] if name.startswith("ham") else ["plain", "geometry"]
    labels = np.r_[np.zeros(n - malignant), np.ones(malignant)].astype(np.int64)
    pooled = rng.normal(0, 1, (len(kinds), n, 8)) + seed
    pooled[:, :, 0] += 5 * labels
    return CachedSource(
        name=name,
        pooled=pooled.astype(np.float16),
        labels=labels,
        paths=[f"{i}.jpg" for i in range(n)],
        full_frame=not name.startswith("ham"),
        copy_kinds=kinds,
    )


def test_hospital_balanced_weights_give_every_hospital_and_class_the_same_total() -> None:
    labels = np.array([0, 0, 0, 1, 0, 1, 1, 1])
    sources = np.array(["a", "a", "a", "a", "b", "b", "b", "b"])

    w = hospital_balanced(labels, sources)

    # 8 images, 2 hospitals x 2 classes: each cell totals 8 / 4 = 2
    assert w.tolist() == pytest.approx([2 / 3, 2 / 3, 2 / 3, 2, 2, 2 / 3, 2 / 3, 2 / 3])


def test_copies_are_picked_by_kind_and_never_twice() -> None:
    full = source("skin-cancer-mvb", n=4, malignant=2, seed=0)
    cropped = source("ham10000-rosendahl", n=4, malignant=2, seed=0)

    assert copy_indices(full, ("plain",)) == [0]
    assert copy_indices(full, ("plain", "geometry")) == [0, 1]
    assert copy_indices(cropped, ("plain", "geometry")) == [0]  # already centre-cropped
    with pytest.raises(StopIteration):
        copy_indices(full, ("plain", "plain"))


def test_training_rows_stack_the_lever_copies_of_every_training_hospital() -> None:
    a = source("skin-cancer-mvb", n=6, malignant=2, seed=1)
    b = source("ham10000-rosendahl", n=4, malignant=3, seed=2)

    x, y, w = training_rows([a, b], lever=LEVERS["four-balanced-geometry"])

    assert x.shape == (6 * 2 + 4, 8)
    np.testing.assert_array_equal(x[6:12], a.pooled[1].astype("float32"))  # a's geometry copy
    np.testing.assert_array_equal(x[12:16], b.pooled[0].astype("float32"))  # b as it is
    assert y.tolist() == (a.labels.tolist() * 2) + b.labels.tolist()
    for hospital in (slice(0, 12), slice(12, 16)):  # each hospital and class carries a quarter
        for c in (0, 1):
            assert w[hospital][y[hospital] == c].sum() == pytest.approx(len(y) / 4)


def test_the_two_hospital_baseline_trains_only_on_the_archives_it_has_not_left_out() -> None:
    base, four = LEVERS["two-hospital"], LEVERS["four-hospital"]

    assert trained_on(base, held_out="ham10000-rosendahl", names=NAMES) == [
        "skin-cancer-mvb",
        "skin-cancer-bcn",
    ]
    assert trained_on(base, held_out="skin-cancer-mvb", names=NAMES) == ["skin-cancer-bcn"]
    assert trained_on(four, held_out="skin-cancer-mvb", names=NAMES) == NAMES[1:]


def test_the_head_learns_a_feature_that_separates_the_classes() -> None:
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(50), np.ones(50)]
    x = rng.normal(0, 1, (100, 4)).astype("float32")
    x[:, 2] += 8 * y  # 8 standard deviations apart: separable

    head = fit_head(x, y, np.ones(100), seed=0, epochs=40, dropout=0.0, batch_size=10, lr=1e-2)
    p = head.predict(x)

    assert p[y == 1].min() > p[y == 0].max()
    assert np.argmax(np.abs(head.weights)) == 2


def test_leave_one_out_scores_every_hospital_it_left_out_for_every_seed() -> None:
    sources = [source(name, n=40, malignant=15, seed=i) for i, name in enumerate(NAMES)]

    result = leave_one_out(sources, lever=LEVERS["four-balanced"], seeds=[0, 1, 2])

    assert list(result["folds"]) == NAMES
    assert result["folds"]["skin-cancer-bcn"]["trained_on"] == [n for n in NAMES if n != "skin-cancer-bcn"]
    for i in range(3):
        assert result["score_by_seed"][i] == pytest.approx(
            np.mean([f["roc_auc"][i] for f in result["folds"].values()])
        )
    assert result["score"] > 0.9  # feature 0 carries the label at every hospital
    assert result["spread"] == pytest.approx(max(result["score_by_seed"]) - min(result["score_by_seed"]))


def test_a_lever_is_kept_only_when_its_gain_beats_the_seed_spread() -> None:
    base = {"score": 0.80, "spread": 0.01}

    assert kept({"score": 0.82, "spread": 0.015}, base)
    assert not kept({"score": 0.82, "spread": 0.03}, base)
    assert not kept({"score": 0.805, "spread": 0.0}, base)


def test_the_command_prints_a_row_per_candidate_from_a_saved_cache(tmp_path: Path) -> None:
    from skinscreen.cli import cli

    for i, name in enumerate(NAMES):
        save_source(source(name, n=30, malignant=10, seed=i), out=tmp_path / "cache")
    args = ["leave-one-out", str(tmp_path / "cache"), "--seeds", "2", "--out", str(tmp_path / "loho.json")]
    args += [a for name in NAMES for a in ("--hospital", name)]
    args += ["--lever", "two-hospital", "--lever", "four-balanced"]

    result = CliRunner().invoke(cli, args)

    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "loho.json").read_text())
    assert [r["lever"] for r in saved] == ["two-hospital", "four-balanced"]
    rows = [
        line for line in result.output.splitlines() if line.startswith("| two") or line.startswith("| four")
    ]
    assert rows[1].startswith("| four-balanced | ")
    assert f"| {saved[1]['score']:.4f} | {saved[1]['spread']:.4f} |" in rows[1]


def test_the_command_refuses_an_unknown_candidate(tmp_path: Path) -> None:
    from skinscreen.cli import cli

    result = CliRunner().invoke(cli, ["leave-one-out", str(tmp_path), "--hospital", "x", "--lever", "magic"])

    assert result.exit_code != 0
    assert "unknown lever" in result.output


def with_maps(cached: CachedSource) -> CachedSource:
    """The source with block-15 activations (7x7x160) whose channel 0 carries the label."""
    rng = np.random.default_rng(0)
    maps = rng.normal(0, 1, (cached.pooled.shape[0], len(cached.labels), 7, 7, 160))
    maps[..., 0] += 3 * cached.labels[None, :, None, None]
    return replace(cached, maps=maps.astype(np.float16))


def test_an_upper_candidate_fine_tunes_on_the_cached_maps_of_every_fold() -> None:
    archives = [with_maps(source(name, n=12, malignant=6, seed=i)) for i, name in enumerate(NAMES[:2])]

    result = leave_one_out(archives, lever=LEVERS["two-hospital-upper"], seeds=[0])

    assert result["folds"]["skin-cancer-mvb"]["trained_on"] == ["skin-cancer-bcn"]
    assert all(0.0 <= f["roc_auc"][0] <= 1.0 for f in result["folds"].values())


def test_an_upper_candidate_refuses_a_cache_loaded_without_maps() -> None:
    archives = [source(name, n=12, malignant=6, seed=i) for i, name in enumerate(NAMES[:2])]

    with pytest.raises(ValueError, match="without its block-15 maps"):
        leave_one_out(archives, lever=LEVERS["two-hospital-upper"], seeds=[0])
