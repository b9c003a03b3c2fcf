"""Does the Grad-CAM heatmap look at the lesion or at the border? The share of heatmap mass in the centre.

Dataset lesions sit near the middle of the image. For each image, the share of the heatmap's mass inside
the centred square covering half of the image's area is computed (a uniform map gives 0.5); the script
prints the mean over the images, and over the flagged ones, and exits 1 when the mean is below --min.

    python scripts/gradcam_centre.py                        # shipped model, the 300 malignant test images
    python scripts/gradcam_centre.py --tta none --json      # one view instead of the card's views

All-zero maps (no evidence for malignancy anywhere) have no mass to share; they are counted apart and
enter the second mean as 0.5.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

from skinscreen.models.classifier import load_classifier
from skinscreen.models.gradcam import centre_share, load_gradcam
from skinscreen.models.preprocess import TTA_MODES, to_model_input
from skinscreen.models.registry import read_card, resolve_model_dir

logger = logging.getLogger(__name__)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "skin-cancer-mvb" / "test" / "malignant"
BATCH = 16


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default", help="model name or directory (default: shipped)")
    parser.add_argument("--data", type=Path, default=DATA, help=f"folder of images (default: {DATA})")
    parser.add_argument(
        "--tta",
        choices=("card", *TTA_MODES),
        default="card",
        help="test-time views averaged into the map (default: the card's, as the server does)",
    )
    parser.add_argument("--limit", type=int, help="only the first N images")
    parser.add_argument("--min", type=float, default=0.6, help="fail below this mean share (default 0.6)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    paths = sorted(args.data.glob("*.jpg"), key=lambda p: (len(p.stem), p.stem))[: args.limit]
    if not paths:
        parser.error(f"no .jpg images in {args.data}")
    model_dir = resolve_model_dir(args.model)
    card = read_card(model_dir)
    tta = card.tta if args.tta == "card" else args.tta
    gradcam, classifier = load_gradcam(model_dir), load_classifier(model_dir)

    started = time.monotonic()
    shares: list[float | None] = []
    flagged: list[bool] = []
    for start in range(0, len(paths), BATCH):
        batch = np.stack([to_model_input(p, size=card.input_size) for p in paths[start : start + BATCH]])
        shares += [centre_share(m) for m in gradcam.explain(batch, tta=tta)]
        flagged += [bool(p >= card.threshold) for p in classifier.predict(batch)]
        print(f"\r{len(shares)}/{len(paths)} images", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)

    found = [s for s in shares if s is not None]
    report = {
        "model": card.version,
        "tta": tta,
        "images": len(paths),
        "zero_maps": len(shares) - len(found),
        "mean_centre_share": round(float(np.mean(found)), 4),
        "mean_centre_share_zero_maps_as_half": round(
            float(np.mean([s if s is not None else 0.5 for s in shares])), 4
        ),
        "median_centre_share": round(float(np.median(found)), 4),
        "images_above_half": int(sum(s > 0.5 for s in found)),
        "flagged": int(sum(flagged)),
        "mean_centre_share_flagged": round(
            float(np.mean([s for s, f in zip(shares, flagged, strict=True) if f and s is not None])), 4
        ),
        "uniform_map": round(float(centre_share(np.ones((card.input_size,) * 2, np.float32)) or 0.0), 4),
        "seconds": round(time.monotonic() - started, 1),
    }
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        for key, value in report.items():
            print(f"{key:<38} {value}")
    return 0 if report["mean_centre_share"] >= args.min else 1


if __name__ == "__main__":
    sys.exit(main())
