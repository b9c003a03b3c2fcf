"""Load a model directory and turn batches of pixels into malignant probabilities.

A model directory (found by `skinscreen.models.registry`) holds `card.json` (version, threshold,
input size), `model.onnx` and `model.keras`. ONNX Runtime is the CPU default; Keras is used where
TensorFlow sees a GPU or when asked. Both compute the same network and agree within 1e-4.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

import numpy as np

from skinscreen.errors import ModelError
from skinscreen.models.preprocess import average_views, view_list
from skinscreen.models.registry import ModelCard, read_card, resolve_model_dir

logger = logging.getLogger(__name__)

# ONNX Runtime runs one single-threaded call per core side by side, each on a few inputs: on this
# network, slices in parallel beat one call spread over the cores by ONNX Runtime's own threads
# (2 cores, 8 views an image: 32.4 img/s at 4 inputs a call against 26.3 with 2 intra-op threads;
# 31.2 at 8, 30.3 at 16). Small calls also keep the memory arena small: it holds on to the peak of
# the largest call it has seen (3.9 GiB after one call of 256 views at 224x224).
ONNX_INPUTS_PER_CALL = 4


class Scorer(Protocol):
    """What scoring needs from a classifier; `Classifier` is one, tests may bring a stand-in."""

    backend: str

    @property
    def version(self) -> str: ...

    @property
    def threshold(self) -> float: ...

    @property
    def input_size(self) -> int: ...

    def predict(self, batch: np.ndarray) -> np.ndarray: ...


class Runtime(Protocol):
    """Runs the network on slices of inputs; returns one probability array per slice, in order."""

    inputs_per_call: int | None  # how finely to slice a batch (None: one slice per view)

    def __call__(self, slices: list[np.ndarray]) -> list[np.ndarray]: ...


def gpu_available() -> bool:
    """True when TensorFlow sees a GPU (imports TensorFlow)."""
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def default_threads() -> int:
    """The cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class OnnxRuntime:
    """One ONNX Runtime session, called from `threads` threads at once, one thread per call."""

    inputs_per_call: int | None = ONNX_INPUTS_PER_CALL

    def __init__(self, path: Path, *, threads: int | None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._input = self._session.get_inputs()[0].name
        # Session.run is thread-safe and releases the GIL while it computes.
        self._pool = ThreadPoolExecutor(threads or default_threads(), thread_name_prefix="onnx")

    def _run(self, inputs: np.ndarray) -> np.ndarray:
        out = self._session.run(None, {self._input: np.ascontiguousarray(inputs, dtype=np.float32)})[0]
        return np.asarray(out, dtype=np.float64).reshape(-1)

    def __call__(self, slices: list[np.ndarray]) -> list[np.ndarray]:
        return list(self._pool.map(self._run, slices))

    def close(self) -> None:
        self._pool.shutdown(wait=True)


class KerasRuntime:
    """A Keras model called once per view: a GPU wants the whole batch at once."""

    inputs_per_call: int | None = None

    def __init__(self, path: Path, *, threads: int | None) -> None:
        import tensorflow as tf

        if threads:
            try:
                tf.config.threading.set_intra_op_parallelism_threads(threads)
                tf.config.threading.set_inter_op_parallelism_threads(1)
            except RuntimeError:  # TensorFlow already initialised in this process
                pass
        from skinscreen.models.layers import load_keras_model

        self._model = load_keras_model(path)

    def __call__(self, slices: list[np.ndarray]) -> list[np.ndarray]:
        return [
            np.asarray(
                self._model.predict_on_batch(np.asarray(s, dtype=np.float32)), dtype=np.float64
            ).reshape(-1)
            for s in slices
        ]


class Classifier:
    """A loaded model: `predict` maps (N, s, s, 3) pixels in 0..255 to N probabilities."""

    def __init__(self, card: ModelCard, runtime: Runtime, backend: str) -> None:
        self.card = card
        self.backend = backend
        self._runtime = runtime

    @property
    def version(self) -> str:
        return self.card.version

    @property
    def threshold(self) -> float:
        return self.card.threshold

    @property
    def input_size(self) -> int:
        return self.card.input_size

    def predict(self, batch: np.ndarray) -> np.ndarray:
        if batch.ndim != 4 or batch.shape[1:] != (self.input_size, self.input_size, 3):
            raise ModelError(f"expected (N, {self.input_size}, {self.input_size}, 3), got {batch.shape}")
        if len(batch) == 0:
            return np.zeros(0, dtype=np.float64)
        # The views are numpy views; each slice is copied once, into the float32 array the runtime reads.
        step = self._runtime.inputs_per_call or len(batch)
        slices = [
            view[i : i + step] for view in view_list(batch, self.card.tta) for i in range(0, len(batch), step)
        ]
        probs = np.concatenate(self._runtime(slices))
        return average_views(probs, n=len(batch)) if self.card.tta != "none" else probs

    def close(self) -> None:
        """Let go of the runtime's threads (a replaced model: its memory goes with the last reference)."""
        close = getattr(self._runtime, "close", None)
        if close is not None:
            close()


def load_classifier(
    name_or_path: str | Path = "default", *, backend: str = "auto", threads: int | None = None
) -> Classifier:
    """Load a model directory with the chosen runtime (`auto`: Keras on a GPU, ONNX Runtime on CPU)."""
    model_dir = resolve_model_dir(name_or_path)
    card = read_card(model_dir)
    files = {"onnx": "model.onnx", "onnx-int8": "model.int8.onnx", "keras": "model.keras"}
    if backend == "auto":
        backend = "onnx" if (model_dir / "model.onnx").exists() and not _gpu_visible_cheaply() else "keras"
    if backend not in files:
        raise ModelError(f"unknown backend {backend!r}; expected auto or one of {sorted(files)}")
    path = model_dir / files[backend]
    if not path.exists():
        raise ModelError(f"{model_dir} has no {path.name} for the {backend} backend")
    factory = KerasRuntime if backend == "keras" else OnnxRuntime
    logger.info("loading model %s (%s backend) from %s", card.version, backend, model_dir)
    classifier = Classifier(card, factory(path, threads=threads), backend)
    if backend == "onnx-int8":
        # Another network computes the scores: keep its version apart in the predictions table.
        classifier.card = dataclasses.replace(card, version=f"{card.version}-int8")
    return classifier


def _gpu_visible_cheaply() -> bool:
    # Importing TensorFlow costs seconds and memory; only do it where a GPU could exist.
    if not Path("/dev/nvidia0").exists() and not os.environ.get("CUDA_VISIBLE_DEVICES"):
        return False
    return gpu_available()
