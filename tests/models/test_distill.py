"""Distillation targets from a teacher-scores file (scripts/teacher_scores.py's format)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from skinscreen.errors import DatasetError
from skinscreen.models.training import distill


@pytest.fixture
def scores_file(tmp_path: Path) -> Path:
    path = tmp_path / "teacher.npz"
    names = np.asarray(["train/benign/a.jpg", "train/malignant/b.jpg", "bcn/benign/c.jpg"])
    one = np.tile(np.asarray([[0.1], [0.8], [0.3]], dtype="float32"), (1, 8))
    two = np.tile(np.asarray([[0.3], [0.6], [0.5]], dtype="float32"), (1, 8))
    two[:, 1] += 0.08  # one view differs: the score is the mean over views
    np.savez(path, names=names, labels=np.asarray([0, 1, 0]), one=one, two=two)
    return path


def test_the_teacher_score_is_the_mean_over_views_and_chosen_teachers(scores_file: Path) -> None:
    names = ["bcn/benign/c.jpg", "train/benign/a.jpg"]
    assert np.allclose(distill.teacher_scores(scores_file, names, ["one"]), [0.3, 0.1])
    assert np.allclose(distill.teacher_scores(scores_file, names, ["two"]), [0.51, 0.31])
    assert np.allclose(distill.teacher_scores(scores_file, names), [(0.3 + 0.51) / 2, (0.1 + 0.31) / 2])


def test_soft_targets_mix_label_and_teacher() -> None:
    got = distill.soft_targets(np.asarray([0.0, 1.0]), np.asarray([0.2, 0.6]), weight=0.5)
    assert np.allclose(got, [0.1, 0.8])
    with pytest.raises(ValueError, match="weight"):
        distill.soft_targets(np.asarray([0.0]), np.asarray([0.2]), weight=1.5)


def test_a_missing_image_or_teacher_is_a_clear_error(scores_file: Path) -> None:
    missing = "no teacher score for 1 training images .first: train/benign/z.jpg"
    with pytest.raises(DatasetError, match=missing):
        distill.teacher_scores(scores_file, ["train/benign/a.jpg", "train/benign/z.jpg"])
    with pytest.raises(DatasetError, match="no teacher three; it has one, two"):
        distill.teacher_scores(scores_file, ["train/benign/a.jpg"], ["three"])


def test_the_record_names_the_file_its_hash_and_the_weight(scores_file: Path) -> None:
    record = distill.describe(scores_file, (), 0.4)
    assert record["teachers"] == ["one", "two"] and record["weight"] == 0.4 and len(record["sha256"]) == 64
