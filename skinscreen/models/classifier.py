"""Load a model directory and turn batches of pixels into malignant probabilities.

A model directory holds `card.json` (version, threshold, input size), `model.onnx` and
`model.keras`. ONNX Runtime is the CPU default; Keras is used where TensorFlow sees a GPU
or when asked. Both compute the same network and agree within 1e-4.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from skinscreen.errors import ModelError
from skinscreen.models.preprocess import average_views, view_list

logger = logging.getLogger(__name__)

SHIPPED = "shipped"
# ONNX Runtime's memory arena keeps the peak of the largest input it has seen (3.9 GiB after 256
# views at 224x224) but is 35 % faster than running without it. Feeding at most 16 inputs a call
# keeps the arena near 0.3 GiB at full speed (measured here: 180 img/s at 8 or 32 a call).
MAX_RUNTIME_BATCH = 16


@dataclass(frozen=True)
class ModelCard:
    """What a scorer needs to know about a model: its name, contract and operating point."""

    version: str
    threshold: float
    input_size: int
    path: Path
    data: dict[str, Any]
    tta: str = "none"


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
    def __call__(self, batch: np.ndarray) -> np.ndarray: ...


def resolve_model_dir(name_or_path: str | Path) -> Path:
    """A shipped model name (`default`) or a path to a model directory."""
    candidate = Path(name_or_path)
    if candidate.is_dir():
        return candidate
    shipped = Path(str(resources.files("skinscreen.models").joinpath(SHIPPED, str(name_or_path))))
    if shipped.is_dir():
        return shipped
    raise ModelError(f"no model named {name_or_path!r}: not a shipped model and not a directory")


def read_card(model_dir: Path) -> ModelCard:
    """Read and check card.json."""
    try:
        data = json.loads((model_dir / "card.json").read_text())
        return ModelCard(
            version=str(data["version"]),
            threshold=float(data["threshold"]),
            input_size=int(data["input_size"]),
            path=model_dir,
            data=data,
            tta=str(data.get("tta", "none")),
        )
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"{model_dir} has no valid card.json: {exc}") from exc


def gpu_available() -> bool:
    """True when TensorFlow sees a GPU (imports TensorFlow)."""
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def default_threads() -> int:
    """The cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def onnx_runtime(path: Path, *, threads: int | None) -> Runtime:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or default_threads()
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(batch: np.ndarray) -> np.ndarray:
        out = session.run(None, {name: np.ascontiguousarray(batch, dtype=np.float32)})[0]
        return np.asarray(out, dtype=np.float64).reshape(-1)

    return run


def keras_runtime(path: Path, *, threads: int | None) -> Runtime:
    import keras
    import tensorflow as tf

    if threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:  # TensorFlow already initialised in this process
            pass
    model = keras.models.load_model(path, compile=False)

    def run(batch: np.ndarray) -> np.ndarray:
        out = model.predict_on_batch(np.asarray(batch, dtype=np.float32))
        return np.asarray(out, dtype=np.float64).reshape(-1)

    return run


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
        # View by view, at most MAX_RUNTIME_BATCH inputs a call (see its comment); each slice is
        # copied once, into the float32 array the runtime reads, instead of stacking all views first.
        probs = np.concatenate(
            [
                self._runtime(view[i : i + MAX_RUNTIME_BATCH])
                for view in view_list(batch, self.card.tta)
                for i in range(0, len(batch), MAX_RUNTIME_BATCH)
            ]
        )
        return average_views(probs, n=len(batch)) if self.card.tta != "none" else probs


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
    factory = keras_runtime if backend == "keras" else onnx_runtime
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
