"""`skinscreen quantize`: an int8 copy of a model's ONNX file (static, per-channel, QDQ).

Calibration uses training images only. The int8 file sits beside the float one as
`model.int8.onnx` and is used with `--backend onnx-int8` (SKINSCREEN_BACKEND=onnx-int8).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from skinscreen.checksum import sha256_file
from skinscreen.models.preprocess import tta_views

INT8_FILE = "model.int8.onnx"


FLOAT_ONLY = "shades_of_gray"  # the name of skinscreen.models.layers.ShadesOfGray in the graph


def quantize_model(model_dir: Path, calibration: Sequence[Path], *, batch_size: int = 16) -> Path:
    """Write model_dir/model.int8.onnx, calibrated on `calibration` images (and their flips)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from skinscreen.models.registry import read_card
    from skinscreen.models.training.dataset import load_pixels

    card = read_card(model_dir)
    pixels = load_pixels(list(calibration), size=card.input_size).astype("float32")

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self.batches = iter(
                tta_views(pixels[i : i + batch_size], "flip4") for i in range(0, len(pixels), batch_size)
            )

        def get_next(self) -> dict[str, Any] | None:
            batch = next(self.batches, None)
            return None if batch is None else {"pixels": batch}

    out = model_dir / INT8_FILE
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(model_dir / "model.onnx"), str(prepared), skip_symbolic_shape=True)
        import onnx

        # Colour constancy (x ** 6, means, a division) needs more than 8 bits, and it is cheap, so it
        # stays float (second shipped model, test split: max probability change 0.474 -> 0.447; the
        # rest is the network's own quantization error, which one view no longer averages out).
        keep_float = [n.name for n in onnx.load(str(prepared)).graph.node if FLOAT_ONLY in n.name]
        quantize_static(
            str(prepared),
            str(out),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            weight_type=QuantType.QInt8,
            activation_type=QuantType.QUInt8,
            nodes_to_exclude=keep_float,
        )
    data = json.loads((model_dir / "card.json").read_text())
    data.setdefault("files", {})[INT8_FILE] = {
        "sha256": sha256_file(out),
        "bytes": out.stat().st_size,
        "calibration_images": len(calibration),
        "method": "ONNX Runtime static quantization, QDQ, per-channel int8 weights, uint8 activations"
        + (", colour constancy kept in float" if keep_float else ""),
    }
    (model_dir / "card.json").write_text(json.dumps(data, indent=1))
    return out
