"""The worked example of docs/sites.md: PH2 as a hospital, calibrated on one half, used on the other.

Splits ../shared/data/ph2 into two halves (stratified by label, seeded), runs the real commands in a
scratch folder (`skinscreen calibrate` on the first half at sensitivity 0.90, then the second half
dropped into inbox/<site>/<date>/ and `skinscreen run --once`), and prints, for the second half, the
sensitivity and specificity of the site's flags next to the model's own threshold on the same
probabilities (95 % Wilson intervals), and the batch's drift check from `skinscreen status`.

    .venv/bin/python scripts/site_example.py [--model default] [--seed 0] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PH2 = REPO.parent / "shared" / "data" / "ph2"
SITE = "ph2-hospital"
DATE = "2026-11-30"


def split_halves(seed: int) -> tuple[dict[Path, int], dict[Path, int]]:
    """Half of each class in each half, drawn with `seed` from the sorted file names."""
    rng = np.random.default_rng(seed)
    first: dict[Path, int] = {}
    second: dict[Path, int] = {}
    for label, name in enumerate(("benign", "malignant")):
        files = sorted((PH2 / name).glob("*.jpg"))
        order = rng.permutation(len(files))
        for rank, index in enumerate(order):
            (first if rank < len(files) // 2 else second)[files[index]] = label
    return first, second


def skinscreen(db: str, *args: str, model: str) -> str:
    env = {
        **os.environ,
        "SKINSCREEN_MODEL": model,
        "SKINSCREEN_DATABASE_URL": db,
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    command = [str(REPO / ".venv" / "bin" / "skinscreen"), "-q", *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"{' '.join(args[:2])} failed:\n{done.stderr}")
    return done.stdout


def rates(labels: np.ndarray, flagged: np.ndarray) -> str:
    from skinscreen.sites.stats import wilson

    sens = wilson(float((flagged & labels).sum()), float(labels.sum()))
    spec = wilson(float((~flagged & ~labels).sum()), float((~labels).sum()))
    return (
        f"sensitivity {sens.value:.3f} ({sens.low:.2f}-{sens.high:.2f}), "
        f"specificity {spec.value:.3f} ({spec.low:.2f}-{spec.high:.2f}), "
        f"flagged {int(flagged.sum())}/{len(flagged)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default", help="model name or directory")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split into halves")
    parser.add_argument("--sensitivity", type=float, default=0.90)
    parser.add_argument(
        "--keep", type=Path, help="work in this folder and keep it (default: a temporary one)"
    )
    args = parser.parse_args()
    if not PH2.is_dir():
        sys.exit(f"PH2 not found at {PH2}")
    sys.path.insert(0, str(REPO))
    from sqlalchemy import select

    from skinscreen.db.session import make_engine, make_session_factory, session_scope
    from skinscreen.db.sites import site_cases
    from skinscreen.db.tables import Image
    from skinscreen.flagging import flags
    from skinscreen.sites.report import model_info

    work = args.keep or Path(tempfile.mkdtemp(prefix="site-example-"))
    work.mkdir(parents=True, exist_ok=True)
    db = f"sqlite:///{work / 'skinscreen.db'}"
    first, second = split_halves(args.seed)
    sample = work / "calibration-sample"
    for path, label in first.items():
        target = sample / ("malignant" if label else "benign")
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target / path.name)
    inbox = work / "inbox"
    batch = inbox / SITE / DATE
    batch.mkdir(parents=True, exist_ok=True)
    for path in second:
        shutil.copy(path, batch / path.name)
    labels_by_name = {path.name: label for path, label in second.items()}

    calibrated = json.loads(
        skinscreen(
            db,
            "calibrate",
            str(sample),
            "--site",
            SITE,
            "--sensitivity",
            str(args.sensitivity),
            "--by",
            "site_example",
            "--format",
            "json",
            model=args.model,
        )
    )
    skinscreen(db, "run", str(inbox), "--once", "--format", "json", model=args.model)
    status = json.loads(skinscreen(db, "status", "--format", "json", model=args.model))
    info = model_info(args.model)

    engine = make_engine(db)
    with session_scope(make_session_factory(engine)) as session:
        # Unblinded: the audit cases' scores count too (the review workspace hides them until a verdict).
        cases = site_cases(session, site=SITE, model_version=info.version)
        paths = {i: p for i, p in session.execute(select(Image.id, Image.path))}
    engine.dispose()
    labels = np.asarray([labels_by_name[Path(paths[c.image_id]).name] for c in cases], dtype=bool)
    probs = np.asarray([c.probability for c in cases])
    site_flags = np.asarray([c.flagged for c in cases], dtype=bool)
    audit = sum(c.audit for c in cases)
    ev = calibrated["evidence"]
    at = ev["at_threshold"]
    print(
        f"model {info.version}; PH2 split with seed {args.seed}: "
        f"{len(first)} to calibrate, {len(second)} to use"
    )
    print(
        f"calibration half ({at['n_malignant']} malignant, {at['n_benign']} benign): site threshold "
        f"{calibrated['threshold']:.4f} for sensitivity >= {args.sensitivity:.2f} "
        f"(model's own {info.threshold:.4f})"
    )
    print(f"  on that half, site threshold:  {rates_from(at)}")
    print(f"  on that half, model threshold: {rates_from(ev['at_model_threshold'])}")
    print(
        f"other half, dropped into inbox/{SITE}/{DATE}/ "
        f"({int(labels.sum())} malignant, {int((~labels).sum())} benign):"
    )
    print(f"  site flags (threshold {calibrated['threshold']:.4f}):  {rates(labels, site_flags)}")
    print(
        f"  model's own threshold {info.threshold:.4f}:        {rates(labels, flags(probs, info.threshold))}"
    )
    print(f"  audit sample: {audit} of the {int((~site_flags).sum())} unflagged cases drawn for review")
    for entry in status["drift"]:
        print(
            f"  drift check of the batch: flag rate {entry.get('flagged_rate')}, expected range "
            f"{entry.get('expected_range')}, PSI {entry.get('psi')} (limit {entry.get('psi_limit')}), "
            f"reference: {entry.get('reference', '-')}; "
            f"warning: {entry.get('warning') or entry.get('note') or 'none'}"
        )
    print(f"work folder: {work}")


def rates_from(point: dict[str, object]) -> str:
    sens, spec = point["sensitivity"], point["specificity"]
    assert isinstance(sens, dict) and isinstance(spec, dict)
    return (
        f"sensitivity {sens['value']:.3f} ({sens['low']:.2f}-{sens['high']:.2f}), "
        f"specificity {spec['value']:.3f} ({spec['low']:.2f}-{spec['high']:.2f})"
    )


if __name__ == "__main__":
    main()
