"""The bad-input corpus through the whole embedded pipeline: each file has a written expected outcome.

The same table is in docs/reliability.md. Run: scripts/test tests/test_bad_inputs.py -v
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from skinscreen.config import Settings
from skinscreen.db import queries
from skinscreen.db.review_queries import CaseFilter, iter_cases
from skinscreen.db.session import make_engine, make_session_factory, session_scope
from skinscreen.runner import run_embedded
from tests.conftest import dataset_images
from tests.dicom_factory import make_corrupt_header_dicom, make_dicom, make_unsupported_syntax_dicom
from tests.test_images import png_bytes


def source() -> Path:
    """The dataset image most of the corpus is made from (the test skips without the dataset)."""
    return dataset_images("malignant", 1)[0]


def _copy(name: str, index: int) -> Callable[[Path], Path]:
    """A distinct dataset image under `name` (the same bytes twice would be one image)."""
    return lambda folder: Path(shutil.copy(dataset_images("malignant", 5)[index], folder / name))


def _converted(name: str, mode: str, **save: object) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        with Image.open(source()) as im:
            im.convert(mode).save(folder / name, **save)
        return folder / name

    return make


def _png16(folder: Path) -> Path:
    with Image.open(source()) as im:
        gray = np.asarray(im.convert("L"), dtype=np.uint16) * 257
    Image.fromarray(gray).save(folder / "sixteen-bit.png")
    return folder / "sixteen-bit.png"


def _multipage(folder: Path) -> Path:
    with Image.open(source()) as im:
        first = im.convert("RGB")
        first.save(folder / "pages.tiff", save_all=True, append_images=[first.rotate(90), first.rotate(180)])
    return folder / "pages.tiff"


def _truncated(folder: Path) -> Path:
    data = source().read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 2])
    return folder / "truncated.jpg"


def _write(name: str, data: bytes) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        (folder / name).write_bytes(data)
        return folder / name

    return make


# name -> (how to make it in the inbox, expected state, expected reason or None)
CORPUS: dict[str, tuple[Callable[[Path], Path], str, str | None]] = {
    "zero bytes": (_write("zero.jpg", b""), "failed", "empty file (0 bytes)"),
    "truncated JPEG": (_truncated, "failed", "truncated or damaged image data"),
    "text named .jpg": (
        _write("notes.jpg", b"lesion on the left arm, see photo\n"),
        "failed",
        "not an image: unrecognised file content",
    ),
    "PNG claiming 100000x100000": (
        _write("bomb.png", png_bytes(100000, 100000)),
        "failed",
        "image too large",
    ),
    "CMYK JPEG": (_converted("cmyk.jpg", "CMYK", quality=95), "scored", None),
    "16-bit PNG": (_png16, "scored", None),
    "grayscale JPEG": (_converted("gray.jpg", "L", quality=95), "scored", None),
    "multi-page TIFF (first page scored)": (_multipage, "scored", None),
    "DICOM without pixel data": (
        lambda f: make_dicom(source(), f / "nopixels.dcm", syntax="explicit_le", with_pixels=False),
        "failed",
        "DICOM has no pixel data",
    ),
    "DICOM with an unsupported transfer syntax": (
        lambda f: make_unsupported_syntax_dicom(source(), f / "jxl.dcm"),
        "failed",
        "cannot be decoded",
    ),
    "DICOM with a corrupt header": (
        lambda f: make_corrupt_header_dicom(f / "corrupt.dcm"),
        "failed",
        "damaged DICOM header",
    ),
    "name with spaces": (_copy("left arm lesion 2.jpg", 2), "scored", None),
    "unicode name": (_copy("läsion-ø-病变.jpg", 3), "scored", None),
    "name with a newline": (_copy("two\nlines.jpg", 4), "scored", None),
}


@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> dict[str, object]:
    """Build the corpus in one inbox, run the embedded pipeline once, return what it recorded."""
    root = tmp_path_factory.mktemp("bad")
    inbox = root / "inbox"
    folder = inbox / "site" / "2026-11-27"
    folder.mkdir(parents=True)
    made = {name: make(folder) for name, (make, _, _) in CORPUS.items()}
    # A symlink leading out of the inbox, to a good image that must never be read through it.
    outside = root / "outside"
    outside.mkdir()
    secret = Path(shutil.copy(dataset_images("benign", 1)[0], outside / "elsewhere.jpg"))
    (folder / "link.jpg").symlink_to(secret)
    # A directory named like an image: not a file; what it holds is scanned like any folder.
    (folder / "lesion.jpg").mkdir()
    inside = Path(shutil.copy(dataset_images("benign", 2)[1], folder / "lesion.jpg" / "inner.jpg"))

    url = f"sqlite:///{root / 'bad.db'}"
    settings = Settings(database_url=url, model=str(tiny_model), settle_seconds=0.2, batch_size=4)
    summary = run_embedded([inbox], settings=settings, once=True, progress=False)
    engine = make_engine(url)
    with session_scope(make_session_factory(engine)) as session:
        cases = {Path(c["path"]): c for c in iter_cases(session, CaseFilter())}
        status = queries.status(session)
    engine.dispose()
    return {
        "made": made,
        "cases": cases,
        "status": status,
        "summary": summary,
        "secret": secret,
        "inside": inside,
    }


@pytest.mark.parametrize("name", list(CORPUS))
def test_each_bad_input_ends_with_its_written_outcome(name: str, outcome: dict) -> None:
    _, state, reason = CORPUS[name]
    case = outcome["cases"][outcome["made"][name]]
    assert case["state"] == state, case
    if reason is None:
        assert case["probability"] is not None and case["reason"] is None
    else:
        assert reason in case["reason"] and case["probability"] is None


def test_a_symlink_out_of_the_inbox_is_refused_and_its_target_never_read(outcome: dict) -> None:
    assert outcome["status"]["refused_files"] == {"symlink points outside the inbox; not read": 1}
    assert all(Path(p).name != "link.jpg" for p in outcome["cases"])
    assert all("elsewhere" not in str(p) for p in outcome["cases"])


def test_a_directory_named_like_an_image_is_walked_not_read(outcome: dict) -> None:
    assert outcome["cases"][outcome["inside"]]["state"] == "scored"
    assert all(not Path(p).is_dir() for p in outcome["cases"])


def test_the_corpus_neither_crashes_the_run_nor_blocks_the_queue(outcome: dict) -> None:
    summary = outcome["summary"]
    assert outcome["status"]["by_state"]["queued"] == 0
    assert summary.counts.scored + summary.counts.failed == len(CORPUS) + 1


@pytest.mark.skipif(os.geteuid() == 0, reason="running as root: a chmod 000 file stays readable")
def test_an_unreadable_file_is_refused_with_permission_denied(tmp_path: Path, tiny_model: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    locked = Path(shutil.copy(source(), inbox / "locked.jpg"))
    locked.chmod(0)
    url = f"sqlite:///{tmp_path / 'perm.db'}"
    run_embedded(
        [inbox],
        settings=Settings(database_url=url, model=str(tiny_model), settle_seconds=0.2),
        once=True,
        progress=False,
    )
    engine = make_engine(url)
    with session_scope(make_session_factory(engine)) as session:
        assert queries.status(session)["refused_files"] == {"permission denied": 1}
    engine.dispose()
