"""Which runtime `load_classifier` picks, checked with stand-in runtimes (no model is run)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from skinscreen.errors import ModelError
from skinscreen.models import classifier as classifier_module
from skinscreen.models.classifier import load_classifier


class FakeRuntime:
    inputs_per_call = None

    def __init__(self, path: Path, *, threads: int | None) -> None:
        self.path, self.threads = path, threads

    def __call__(self, slices: list[np.ndarray]) -> list[np.ndarray]:
        return [np.full(len(s), 0.5) for s in slices]


class FakeOnnx(FakeRuntime):
    pass


class FakeKeras(FakeRuntime):
    pass


@pytest.fixture(autouse=True)
def fake_runtimes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(classifier_module, "OnnxRuntime", FakeOnnx)
    monkeypatch.setattr(classifier_module, "KerasRuntime", FakeKeras)


def model_dir(tmp_path: Path, *files: str) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "card.json").write_text(json.dumps({"version": "v1", "threshold": 0.4, "input_size": 8}))
    for name in files:
        (tmp_path / name).write_bytes(b"")
    return tmp_path


def gpu(monkeypatch: pytest.MonkeyPatch, visible: bool) -> None:
    monkeypatch.setattr(classifier_module, "_gpu_visible_cheaply", lambda: visible)


def test_auto_picks_onnx_runtime_on_a_cpu_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gpu(monkeypatch, False)
    clf = load_classifier(model_dir(tmp_path, "model.onnx", "model.keras"), threads=3)
    assert clf.backend == "onnx" and isinstance(clf._runtime, FakeOnnx)
    assert clf._runtime.path.name == "model.onnx" and clf._runtime.threads == 3
    assert (clf.version, clf.threshold, clf.input_size) == ("v1", 0.4, 8)


def test_auto_picks_keras_where_a_gpu_is_visible(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gpu(monkeypatch, True)
    clf = load_classifier(model_dir(tmp_path, "model.onnx", "model.keras"))
    assert clf.backend == "keras" and isinstance(clf._runtime, FakeKeras)


def test_auto_falls_back_to_keras_without_an_onnx_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gpu(monkeypatch, False)
    clf = load_classifier(model_dir(tmp_path, "model.keras"))
    assert clf.backend == "keras" and clf._runtime.path.name == "model.keras"


def test_int8_reads_its_own_file_and_keeps_its_predictions_apart_by_version(tmp_path: Path) -> None:
    clf = load_classifier(model_dir(tmp_path, "model.onnx", "model.int8.onnx"), backend="onnx-int8")
    assert isinstance(clf._runtime, FakeOnnx) and clf._runtime.path.name == "model.int8.onnx"
    assert clf.version == "v1-int8"


def test_an_unknown_backend_or_a_missing_file_is_a_model_error(tmp_path: Path) -> None:
    folder = model_dir(tmp_path, "model.onnx")
    with pytest.raises(ModelError, match="unknown backend 'tflite'"):
        load_classifier(folder, backend="tflite")
    with pytest.raises(ModelError, match="no model.int8.onnx for the onnx-int8 backend"):
        load_classifier(folder, backend="onnx-int8")
    with pytest.raises(ModelError, match="no model named"):
        load_classifier(tmp_path / "nowhere")


def test_without_a_gpu_device_tensorflow_is_not_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    def asked() -> bool:
        raise AssertionError("TensorFlow was imported to look for a GPU")

    monkeypatch.setattr(classifier_module, "gpu_available", asked)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(classifier_module, "Path", lambda p: Path("/nonexistent") / Path(p).name)
    assert classifier_module._gpu_visible_cheaply() is False
