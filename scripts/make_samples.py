"""Build the sample inbox `samples/inbox/` and `samples/README.md` from the skin-cancer-mvb data set.

Six JPEGs from the test split are copied unchanged (three benign, three malignant) and five more test
images are written as DICOM in five transfer syntaxes by `tests/dicom_factory.py`. None of the chosen
images is among the test images that the data set's SOURCE.md lists as near-duplicates of training
images. The output is
deterministic: running the script again writes the same bytes. Every file is read back through
`skinscreen.images.read_image` before the README is written.

    python scripts/make_samples.py [--data PATH] [--out samples]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import logging
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # makes `tests.dicom_factory` and `skinscreen` importable from a checkout

from skinscreen.images import read_image  # noqa: E402
from tests.dicom_factory import make_dicom  # noqa: E402

logger = logging.getLogger(__name__)

DEFAULT_DATA = REPO.parent / "shared" / "data" / "skin-cancer-mvb"
# (dataset path, sample name, transfer syntax or None for a plain copy)
SAMPLES: list[tuple[str, str, str | None]] = [
    ("test/benign/1.jpg", "lesion-01.jpg", None),
    ("test/benign/5.jpg", "lesion-02.jpg", None),
    ("test/benign/8.jpg", "lesion-03.jpg", None),
    ("test/malignant/1.jpg", "lesion-04.jpg", None),
    ("test/malignant/3.jpg", "lesion-05.jpg", None),
    ("test/malignant/4.jpg", "lesion-06.jpg", None),
    ("test/benign/9.jpg", "lesion-07-jpeg-baseline.dcm", "jpeg_baseline_ybr"),
    ("test/malignant/8.jpg", "lesion-08-explicit-le.dcm", "explicit_le"),
    ("test/malignant/17.jpg", "lesion-09-rle.dcm", "rle"),
    ("test/benign/10.jpg", "lesion-10-jpeg-ls.dcm", "jpeg_ls"),
    ("test/malignant/24.jpg", "lesion-11-jpeg2000.dcm", "jpeg2000"),
]
SYNTAX_NAMES = {
    "jpeg_baseline_ybr": "JPEG Baseline 1.2.840.10008.1.2.4.50 (source JPEG bytes, YBR_FULL)",
    "explicit_le": "Explicit VR Little Endian 1.2.840.10008.1.2.1 (uncompressed RGB)",
    "rle": "RLE Lossless 1.2.840.10008.1.2.5",
    "jpeg_ls": "JPEG-LS Lossless 1.2.840.10008.1.2.4.80",
    "jpeg2000": "JPEG 2000 Lossless 1.2.840.10008.1.2.4.90",
}
MAX_TOTAL_BYTES = 1_500_000

README_HEAD = """# Sample inbox

`inbox/` holds {count} dermoscopy images ({size_kb} KB in all) to try the screener on: six JPEGs copied
unchanged and five DICOM files (Dermoscopic Photography Image Storage) in different transfer syntaxes.
They were written by `scripts/make_samples.py`; run it again to rebuild them byte for byte.

The DICOM files carry an invented patient (`Sample^Patient`, IDs `SAMPLE-07`...`SAMPLE-11`),
so you can check that patient identifiers never appear in results or logs.

## Source and licence

All images come from the Kaggle data set "Skin Cancer: Malignant vs. Benign" by fanconic
(https://www.kaggle.com/datasets/fanconic/skin-cancer-malignant-vs-benign), whose images are dermoscopy
images from the ISIC Archive (https://www.isic-archive.com), resized to 224x224. ISIC images carry
per-image licences (mostly CC-0, CC-BY or CC-BY-NC): use these samples for research and non-commercial
purposes only, and cite the ISIC Archive. The label column is the data set's; it is not a diagnosis.

## Files

| Sample | Format | Data set file | Label | SHA-256 of the data set file |
|--------|--------|---------------|-------|------------------------------|
"""


def load_manifest(data: Path) -> dict[str, str]:
    """Map each data set path to its SHA-256, from MANIFEST.csv."""
    with (data / "MANIFEST.csv").open(newline="") as fh:
        return {row["path"]: row["sha256"] for row in csv.DictReader(fh)}


def build_samples(*, data: Path, out: Path) -> list[Path]:
    """Write the inbox and README under `out`; return the inbox files."""
    manifest = load_manifest(data)
    inbox = out / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    rows, written = [], []
    for source, name, syntax in SAMPLES:
        src = data / source
        digest = hashlib.sha256(src.read_bytes()).hexdigest()
        if manifest.get(source) != digest:
            raise SystemExit(f"{src} does not match MANIFEST.csv")
        dst = inbox / name
        if syntax is None:
            shutil.copyfile(src, dst)
        else:
            number = name.split("-")[1]
            make_dicom(src, dst, syntax=syntax, patient_name="Sample^Patient", patient_id=f"SAMPLE-{number}")
        image = read_image(dst)
        logger.info("%s: %s %s from %s", name, image.format, image.pixels.shape, source)
        fmt = "JPEG" if syntax is None else f"DICOM, {SYNTAX_NAMES[syntax]}"
        rows.append(f"| `{name}` | {fmt} | `{source}` | {source.split('/')[1]} | `{digest}` |")
        written.append(dst)
    total = sum(path.stat().st_size for path in written)
    if total > MAX_TOTAL_BYTES:
        raise SystemExit(f"the inbox holds {total} bytes, more than {MAX_TOTAL_BYTES}")
    head = README_HEAD.format(count=len(written), size_kb=round(total / 1000))
    (out / "README.md").write_text(head + "\n".join(rows) + "\n")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="skin-cancer-mvb folder")
    parser.add_argument("--out", type=Path, default=REPO / "samples", help="folder for inbox/ and README.md")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not (args.data / "MANIFEST.csv").is_file():
        parser.error(f"{args.data} is not the skin-cancer-mvb data set (no MANIFEST.csv)")
    written = build_samples(data=args.data, out=args.out)
    logger.info("wrote %d files to %s", len(written), args.out / "inbox")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
