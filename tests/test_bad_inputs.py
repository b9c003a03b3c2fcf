"""The bad-input corpus through the whole embedded pipeline: each file has a written expected outcome.

The corpus runs once on SQLite and once on PostgreSQL (a fresh schema), with every log line and
warning captured, so that no header value and no raw file name reaches a log.
The same table is in docs/reliability.md. Run: scripts/test tests/test_bad_inputs.py -v
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from skinscreen.config import Settings
from skinscreen.db import queries
from skinscreen.db.cases import CaseFilter, iter_cases
from skinscreen.db.session import make_engine, make_session_factory, session_scope
from skinscreen.db.tables import Image as ImageRow
from skinscreen.runner import run_embedded
from tests.conftest import dataset_images, fresh_pg_schema
from tests.dicom_factory import (
    FUZZ_KINDS,
    FUZZ_SECRETS,
    HUGE_UID,
    LONG_STUDY_UID,
    make_corrupt_header_dicom,
    make_dicom,
    make_fuzzed_dicom,
    make_unsupported_syntax_dicom,
)
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


# DICOM metadata fuzzing: odd headers over good pixels, each its own source image (distinct bytes).
def _fuzzed(kind: str, index: int) -> Callable[[Path], Path]:
    return lambda folder: make_fuzzed_dicom(
        dataset_images("benign", 40)[20 + index], folder / f"fuzz-{kind}.dcm", kind=kind
    )


for _i, (_kind, (_state, _reason)) in enumerate(FUZZ_KINDS.items()):
    CORPUS[f"fuzzed DICOM: {_kind}"] = (_fuzzed(_kind, _i), _state, _reason)
# A corpus run takes a few seconds; a stalled run (a refused value retried forever) fails here.
RUN_SECONDS = 60


@contextmanager
def captured_logs() -> Iterator[io.StringIO]:
    """Every log record (DEBUG and up, any logger) and every warning, as the text a handler writes."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.DEBUG)
    root = logging.getLogger()
    old_level = root.level
    # `skinscreen run`, invoked in process by other tests, quiets these loggers for its progress bar.
    quieted = {name: logging.getLogger(name).level for name in ("skinscreen.ingest", "skinscreen.worker")}
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    for name in quieted:
        logging.getLogger(name).setLevel(logging.NOTSET)
    logging.captureWarnings(True)
    try:
        with warnings.catch_warnings():  # the filters in force stay; a warning that passes them is logged
            yield out
    finally:
        logging.captureWarnings(False)
        root.removeHandler(handler)
        root.setLevel(old_level)
        for name, level in quieted.items():
            logging.getLogger(name).setLevel(level)


@contextmanager
def database(kind: str, root: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{root / 'bad.db'}"
    else:
        with fresh_pg_schema() as url:
            yield url


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def outcome(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tiny_model: Path
) -> Iterator[dict[str, object]]:
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
    # A name that is not UTF-8 (Latin-1 from an old share): no database can hold it as text.
    latin1 = os.fsdecode(bytes(folder) + b"/l\xe9sion-Dupont.jpg")
    shutil.copy(dataset_images("benign", 3)[2], latin1)

    with database(request.param, root) as url:
        settings = Settings(database_url=url, model=str(tiny_model), settle_seconds=0.2, batch_size=4)
        started = time.monotonic()
        with captured_logs() as logs:
            summary = run_embedded([inbox], settings=settings, once=True, progress=False)
        seconds = time.monotonic() - started
        engine = make_engine(url)
        with session_scope(make_session_factory(engine)) as session:
            cases = {Path(c["path"]): c for c in iter_cases(session, CaseFilter())}
            status = queries.status(session)
            dicom = {Path(r.path): r for r in session.query(ImageRow).filter(ImageRow.format == "dicom")}
        engine.dispose()
        yield {
            "made": made,
            "cases": cases,
            "status": status,
            "summary": summary,
            "secret": secret,
            "inside": inside,
            "logs": logs.getvalue(),
            "seconds": seconds,
            "dicom": dicom,
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
    refused = outcome["status"]["refused_files"]
    assert refused["symlink points outside the inbox; not read"] == 1
    assert all(Path(p).name != "link.jpg" for p in outcome["cases"])
    assert all("elsewhere" not in str(p) for p in outcome["cases"])


def test_a_name_that_is_not_utf8_is_refused_with_a_reason_not_retried_forever(outcome: dict) -> None:
    refused = outcome["status"]["refused_files"]
    assert len(refused) == 2 and sum(refused.values()) == 2
    reason = next(r for r in refused if r.startswith("the file's name or folder cannot be stored"))
    assert "rename or move the file" in reason
    assert outcome["summary"].counts.refused == 2


def test_a_directory_named_like_an_image_is_walked_not_read(outcome: dict) -> None:
    assert outcome["cases"][outcome["inside"]]["state"] == "scored"
    assert all(not Path(p).is_dir() for p in outcome["cases"])


def test_the_corpus_neither_crashes_the_run_nor_blocks_the_queue(outcome: dict) -> None:
    summary = outcome["summary"]
    assert outcome["status"]["by_state"]["queued"] == 0
    assert summary.counts.scored + summary.counts.failed == len(CORPUS) + 1
    assert outcome["seconds"] < RUN_SECONDS


def test_dicom_values_are_stored_as_the_file_says_or_visibly_cut(outcome: dict) -> None:
    rows = outcome["dicom"]
    made = outcome["made"]
    assert rows[made["fuzzed DICOM: long_study_uid"]].study_uid == LONG_STUDY_UID  # 96 characters, whole
    huge = rows[made["fuzzed DICOM: huge_uids"]]
    assert huge.study_uid == LONG_STUDY_UID + ".2"
    assert huge.series_uid.startswith(HUGE_UID[:200])
    assert huge.series_uid.endswith(f"...[truncated, {len(HUGE_UID)} characters]")
    assert len(huge.series_uid) == 256
    assert rows[made["fuzzed DICOM: utf8"]].body_site == "Rücken-背中"
    odd = rows[made["fuzzed DICOM: nul_in_strings"]]
    assert odd.study_uid == "1.2.3\\x00.4"
    assert odd.body_site == "NUL-in-body\\x00\\x01\\x1b[31m"
    missing = rows[made["fuzzed DICOM: missing_uids"]]
    assert missing.study_uid is None and missing.sop_class_uid is not None


def test_no_header_value_and_no_raw_file_name_reaches_a_log(outcome: dict) -> None:
    logs = outcome["logs"]
    assert "registered" in logs.lower() or "batch of" in logs  # the capture did see the run
    for value in (*FUZZ_SECRETS, LONG_STUDY_UID, HUGE_UID[:80], "Skin of back Skin of back", "ZZTOP"):
        assert value not in logs, value
    for path in outcome["made"].values():
        assert path.name not in logs, path.name
    for stem in ("two\nlines", "läsion-ø-病变", "left arm lesion", "fuzz-"):
        assert stem not in logs, stem
    for name in ("link.jpg", "elsewhere", "inner.jpg", "Dupont"):
        assert name not in logs, name


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


@pytest.mark.integration
def test_an_overlong_uid_dicom_with_two_jpegs_does_not_stall_run_once_on_postgresql(
    pg_url: str, tiny_model: Path, tmp_path: Path
) -> None:
    """The issue's bar: `skinscreen run --once` returns within 60 s, the JPEGs scored, the DICOM too."""
    import json
    import subprocess

    from tests.worker.pipeline import SKINSCREEN, env_for

    folder = tmp_path / "inbox" / "site" / "day"
    folder.mkdir(parents=True)
    sources = dataset_images("benign", 2)
    jpegs = [Path(shutil.copy(p, folder / f"lesion-{i}.jpg")) for i, p in enumerate(sources)]
    dicom = make_fuzzed_dicom(source(), folder / "long-uid.dcm", kind="long_study_uid")
    env = env_for(database_url=pg_url, model=tiny_model, settle_seconds=0.2)
    started = time.monotonic()
    done = subprocess.run(  # a stall (a refused value retried forever) fails here after 60 s
        [*SKINSCREEN, "-v", "run", "--once", "--format", "json", str(tmp_path / "inbox")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    seconds = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert summary["new_images"] == 3 and summary["scored"] + summary["failed"] == 3, summary
    engine = make_engine(pg_url)
    with session_scope(make_session_factory(engine)) as session:
        rows = {Path(r.path).name: r for r in session.query(ImageRow)}
    engine.dispose()
    assert all(rows[p.name].state == "scored" for p in jpegs)
    row = rows[dicom.name]
    assert row.state == "scored" or (row.state == "failed" and row.reason), (row.state, row.reason)
    assert row.study_uid == LONG_STUDY_UID
    assert seconds < 60
    for secret in (LONG_STUDY_UID, "Doe^Jane", "PID-12345", "long-uid.dcm", "lesion-0.jpg"):
        assert secret not in done.stderr, secret
