"""The one scoring path: files in, probabilities and flags out, with the threshold the caller gives."""

from __future__ import annotations

from pathlib import Path

import pytest

from skinscreen.flagging import is_flagged
from skinscreen.models.classifier import Classifier, load_classifier
from skinscreen.models.screening import score_files
from tests.conftest import REPO

SAMPLES = sorted((REPO / "samples" / "inbox").iterdir())


@pytest.fixture(scope="module")
def classifier(tiny_model: Path) -> Classifier:
    return load_classifier(tiny_model, backend="onnx", threads=1)


@pytest.fixture
def files(tmp_path: Path) -> list[Path]:
    """Five sample files with an unreadable one in the middle."""
    bad = tmp_path / "notes.jpg"
    bad.write_text("not a photograph\n")
    return [*SAMPLES[:2], bad, *SAMPLES[6:8]]


def test_files_keep_their_order_and_an_unreadable_one_gets_a_reason_instead_of_a_flag(
    classifier: Classifier, files: list[Path]
) -> None:
    results = score_files(files, classifier=classifier, batch_size=2)
    assert [r.path for r in results] == files
    bad = results[2]
    assert (bad.probability, bad.flagged, bad.threshold) == (None, None, None)
    assert bad.reason is not None and bad.reason.startswith("not an image")
    good = [r for r in results if r.probability is not None]
    assert len(good) == 4 and {r.format for r in good} == {"jpeg", "dicom"}
    assert all(r.threshold == classifier.threshold for r in good)
    assert all(r.flagged == is_flagged(r.probability or 0.0, classifier.threshold) for r in good)
    assert results[3].dicom is not None and results[3].dicom.sop_uid


def test_the_batch_size_changes_no_probability(classifier: Classifier, files: list[Path]) -> None:
    one_call = score_files(files, classifier=classifier, batch_size=len(files))
    small = score_files(files, classifier=classifier, batch_size=2)
    for a, b in zip(one_call, small, strict=True):
        assert a.probability == pytest.approx(b.probability, abs=1e-6)


def test_a_threshold_per_file_or_from_a_function_of_the_path_decides_each_flag(
    classifier: Classifier, files: list[Path]
) -> None:
    probabilities = [r.probability for r in score_files(files, classifier=classifier)]
    # Just below and just above each file's probability: every flag is decided by its own threshold.
    limits = [(p or 0.5) + (-1e-6 if i % 2 else 1e-6) for i, p in enumerate(probabilities)]
    per_file = score_files(files, classifier=classifier, threshold=limits)
    assert [r.flagged for r in per_file] == [
        None if p is None else bool(i % 2) for i, p in enumerate(probabilities)
    ]
    assert [r.threshold for r in per_file if r.probability is not None] == [
        t for t, p in zip(limits, probabilities, strict=True) if p is not None
    ]

    by_path = dict(zip(files, limits, strict=True))
    from_function = score_files(files, classifier=classifier, threshold=by_path.__getitem__, batch_size=2)
    assert [r.flagged for r in from_function] == [r.flagged for r in per_file]

    everything = score_files(files, classifier=classifier, threshold=0.0)
    assert all(r.flagged for r in everything if r.probability is not None)


def test_a_threshold_list_of_the_wrong_length_is_refused(classifier: Classifier, files: list[Path]) -> None:
    with pytest.raises(ValueError, match="4 thresholds for 5 files"):
        score_files(files, classifier=classifier, threshold=[0.5] * 4)
