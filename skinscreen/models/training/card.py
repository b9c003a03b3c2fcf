"""The model card: card.json (machine-read) and MODEL_CARD.md (people-read) beside the model files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def finish_card(
    model_dir: Path,
    *,
    test_dir: Path | None,
    eval_out: Path | None = None,
    external_dirs: tuple[Path, ...] = (),
) -> dict[str, Any]:
    """Add test figures (with and without near-duplicates, ONNX vs Keras), external test figures
    (other hospitals, reported, never used for a choice) and write MODEL_CARD.md."""
    card: dict[str, Any] = json.loads((model_dir / "card.json").read_text())
    out = eval_out or model_dir.parent / "test-evaluation"
    if test_dir is not None:
        card["test"] = test_figures(model_dir, test_dir, out=out)
    if external_dirs:
        card["external_test"] = {
            folder.name: external_figures(model_dir, folder, out=out.parent / f"external-{folder.name}")
            for folder in external_dirs
        }
    (model_dir / "card.json").write_text(json.dumps(card, indent=1))
    (model_dir / "MODEL_CARD.md").write_text(render(card))
    return card


def test_figures(model_dir: Path, test_dir: Path, *, out: Path) -> dict[str, Any]:
    """Evaluate the exported ONNX model on `test_dir` and compare its probabilities with Keras'."""
    from skinscreen.models.classifier import load_classifier
    from skinscreen.models.training.dataset import list_labelled, load_pixels
    from skinscreen.models.training.evaluate import evaluate
    from skinscreen.models.training.export import max_abs_difference

    onnx = load_classifier(model_dir, backend="onnx")
    train_dir = test_dir.parent / "train" if (test_dir.parent / "train").is_dir() else None
    metrics = evaluate(test_dir, classifier=onnx, out=out, train_dir=train_dir, progress=False)
    files = list_labelled(test_dir)
    pixels = load_pixels(files.paths, size=onnx.input_size)
    keras_model = load_classifier(model_dir, backend="keras")
    return {
        "data_dir": str(test_dir),
        "all": metrics["all"],
        "without_near_duplicates": metrics["without_near_duplicates"],
        "onnx_vs_keras_max_abs_diff": max_abs_difference(keras_model, onnx, pixels),
        "images": len(files.paths),
    }


def external_figures(model_dir: Path, folder: Path, *, out: Path) -> dict[str, Any]:
    """`evaluate` on another hospital's labelled folder, at the model's own threshold."""
    from skinscreen.models.classifier import load_classifier
    from skinscreen.models.training.evaluate import evaluate

    result = evaluate(folder, classifier=load_classifier(model_dir, backend="onnx"), out=out, train_dir=None)
    return {"data_dir": str(folder), "all": result["all"]}


TABLE_HEAD = [
    "| subset | n | accuracy | ROC AUC | sensitivity | specificity "
    "| acc. @0.5 | sens. @0.5 | spec. @0.5 | Brier |",
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
]


def _row(name: str, m: dict[str, Any]) -> str:
    t, h = m["at_threshold"], m["at_0.5"]
    return (
        f"| {name} | {m['n']} | {t['accuracy']:.4f} | {m['roc_auc']:.4f} | {t['sensitivity']:.4f} | "
        f"{t['specificity']:.4f} | {h['accuracy']:.4f} | {h['sensitivity']:.4f} | {h['specificity']:.4f} | "
        f"{m['brier']:.4f} |"
    )


def render(card: dict[str, Any]) -> str:
    """MODEL_CARD.md from card.json."""
    tr = card.get("training", {})
    recipe = tr.get("recipe", {})
    lines = [
        f"# Model card: {card['version']}",
        "",
        "## Intended use",
        "",
        card.get("intended_use", ""),
        "",
        "## Model",
        "",
        f"- Architecture: {card.get('architecture')}",
        f"- Input: {card['preprocessing']['input']}; {card['preprocessing']['scaling']}",
        f"- Colour constancy: {card['preprocessing'].get('colour_constancy', 'none')}",
        f"- Network passes per image: {card.get('views', 1)} (test-time views: {card.get('tta', 'none')})",
        f"- Operating threshold: **{card['threshold']:.6f}** ({card.get('threshold_rule')}); "
        "a case is flagged when its probability is >= the threshold",
        "- Files: "
        + ", ".join(
            f"`{n}` ({f['bytes'] / 1e6:.1f} MB, sha256 `{f['sha256'][:16]}...`)"
            for n, f in card.get("files", {}).items()
        ),
        "",
        "## How it was made",
        "",
        f"- Recipe `{recipe.get('name')}`, seed {tr.get('seed')}, epochs {tr.get('epochs')}",
        *(
            [f"- Started from `{tr['init_from']['path']}` (sha256 `{tr['init_from']['sha256'][:16]}...`)"]
            if tr.get("init_from")
            else []
        ),
        *([_teacher_line(tr["teacher"])] if tr.get("teacher") else []),
        f"- Training data sha256 (paths, labels, file hashes): `{tr.get('train_data_sha256')}`; "
        f"{tr.get('train_images')} training and {tr.get('validation_images')} validation images "
        "(grouped split: duplicates and near-duplicates on one side only)",
        f"- Backbone: ImageNet MobileNetV2 from `{tr.get('backbone_weights')}` "
        f"(sha256 `{tr.get('backbone_weights_sha256')}`)",
        f"- Training time: {tr.get('seconds')} s on the machine that trained it; "
        f"versions {tr.get('versions')}",
        "- Validation (used to pick the epoch and the threshold): "
        + ", ".join(f"{k} {v:.4f}" for k, v in tr.get("validation", {}).items()),
        *[
            f"  - {source} ({tr.get('images_by_source', {}).get(source, {}).get('validation', '?')} images): "
            + ", ".join(f"{k} {v:.4f}" for k, v in figures.items())
            for source, figures in tr.get("validation_by_source", {}).items()
        ],
        *([f"- Note: {tr['threshold_note']}"] if tr.get("threshold_note") else []),
        *([f"- Chosen as the shipped model: {card['selection']}"] if card.get("selection") else []),
        "",
        "Recipe choices:",
        "",
        *[f"- {note}" for note in recipe.get("notes", [])],
        "",
    ]
    test = card.get("test")
    if test:
        lines += [
            "## Test figures",
            "",
            f"On `{test['data_dir']}` ({test['images']} images), never used for any choice.",
            "",
            *TABLE_HEAD,
            _row("all test images", test["all"]),
            _row("without near-duplicates of train", test["without_near_duplicates"]),
            "",
            f"ONNX Runtime vs Keras over the test split: max abs difference "
            f"{test['onnx_vs_keras_max_abs_diff']:.2e}.",
            "",
        ]
    for name, ext in card.get("external_test", {}).items():
        ci = ext["all"].get("intervals_95", {})
        lines += [
            f"## External test: {name}",
            "",
            f"On `{ext['data_dir']}` ({ext['all']['n']} images from another hospital), reported only: never "
            "used to train, tune, or choose a threshold, recipe or seed.",
            "",
            *TABLE_HEAD,
            _row(name, ext["all"]),
            "",
            *(
                [
                    f"95 % intervals ({ci['method']}): ROC AUC "
                    f"{ci['roc_auc'][0]:.3f}-{ci['roc_auc'][1]:.3f}, "
                    f"sensitivity {ci['sensitivity'][0]:.3f}-{ci['sensitivity'][1]:.3f}, specificity "
                    f"{ci['specificity'][0]:.3f}-{ci['specificity'][1]:.3f}.",
                    "",
                ]
                if ci.get("computed")
                else []
            ),
        ]
    int8 = card.get("int8_test")
    if int8:
        lines += [
            "## int8 copy (`--backend onnx-int8`)",
            "",
            f"{card['files']['model.int8.onnx']['method']}, calibrated on "
            f"{card['files']['model.int8.onnx']['calibration_images']} training images. On the test split: "
            f"ROC AUC {int8['roc_auc']:.4f} (float {int8['float_roc_auc']:.4f}), max abs probability "
            f"difference {int8['max_abs_diff']:.3f}, {int8['speedup']:.1f} x the float throughput here. "
            "It uses the float model's threshold.",
            "",
        ]
    lines += [
        "## Limitations",
        "",
        f"- Trained on dermoscopy images from {len(tr.get('images_by_source') or {'one': 0})} archive(s) "
        "(224x224); other cameras, clinical (non-dermoscopic) photos and other populations are out of "
        "distribution: calibrate each site (docs/sites.md).",
        "- Benign vs malignant only: no lesion subtype.",
        "- The threshold targets 90 % sensitivity on validation; sensitivity on new data can be lower.",
        "",
    ]
    return "\n".join(lines)


def _teacher_line(teacher: dict[str, Any]) -> str:
    weight = teacher["weight"]
    return (
        f"- Distilled from {' + '.join(teacher['teachers'])} ({teacher['views']} views each; "
        f"targets {1 - weight:g} x label + {weight:g} x teacher score; teacher scores "
        f"`{Path(teacher['file']).name}`, sha256 `{teacher['sha256'][:16]}...`)"
    )
