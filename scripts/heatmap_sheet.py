"""A contact sheet of Grad-CAM overlays for a few images of a labelled folder (README figures).

    .venv/bin/python scripts/heatmap_sheet.py ../shared/data/ph2 docs/screenshots/ph2-heatmaps.png

Takes the first --per-class images of benign/ and malignant/ (sorted by name), scores them and
writes a grid: each tile is the image with its heatmap, captioned with the label and the score.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from skinscreen.models.classifier import load_classifier
from skinscreen.models.gradcam import load_gradcam, overlay
from skinscreen.models.preprocess import to_model_input
from skinscreen.models.registry import resolve_model_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--model", default="default")
    parser.add_argument("--per-class", type=int, default=4)
    args = parser.parse_args()
    model_dir = resolve_model_dir(args.model)
    classifier, gradcam = load_classifier(model_dir), load_gradcam(model_dir)
    size = classifier.input_size
    paths = [
        (label, p)
        for label in ("benign", "malignant")
        for p in sorted((args.folder / label).glob("*.jpg"))[: args.per_class]
    ]
    pixels = np.stack([to_model_input(p, size=size) for _, p in paths])
    probs = classifier.predict(pixels)
    maps = gradcam.explain(pixels, tta=classifier.card.tta)
    tiles = []
    for (label, path), px, prob, heat in zip(paths, pixels, probs, maps, strict=True):
        tile = Image.fromarray(np.concatenate([px, overlay(px, heat)], axis=1))
        canvas = Image.new("RGB", (tile.width, tile.height + 18), "white")
        canvas.paste(tile, (0, 18))
        flag = "flagged" if prob >= classifier.threshold else "not flagged"
        ImageDraw.Draw(canvas).text((4, 3), f"{path.stem}: {label}, p={prob:.2f} ({flag})", fill="black")
        tiles.append(canvas)
    cols = 2
    rows = (len(tiles) + cols - 1) // cols
    sheet = Image.new("RGB", (cols * tiles[0].width, rows * tiles[0].height), "white")
    for i, tile in enumerate(tiles):
        sheet.paste(tile, ((i % cols) * tile.width, (i // cols) * tile.height))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out)
    print(f"wrote {args.out} ({len(tiles)} images, model {classifier.version})")


if __name__ == "__main__":
    main()
