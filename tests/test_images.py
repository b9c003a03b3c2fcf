"""read_image: every format path, and every way a file can be unusable, ends as pixels or a reason."""

from __future__ import annotations

import logging
import os
import random
import shutil
import struct
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from PIL import Image, ImageFile, UnidentifiedImageError
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from skinscreen.errors import UnreadableImageError
from skinscreen.images import LoadedImage, read_image
from tests import dicom_factory as factory

DATA = Path(__file__).resolve().parent / "data"
SAMPLE_JPEG = DATA / "isic_test_malignant_13.jpg"
SAMPLE_DICOM = DATA / "isic_test_malignant_13_jpeg_baseline.dcm"
DATASET = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "skin-cancer-mvb"
PATIENT_TOKENS = ("Doe^Jane", "Doe", "Jane", "PID-12345", "19700101")
EXPECTED_SYNTAX = {
    "explicit_le": "1.2.840.10008.1.2.1",
    "implicit_le": "1.2.840.10008.1.2",
    "jpeg_baseline_ybr": "1.2.840.10008.1.2.4.50",
    "rle": "1.2.840.10008.1.2.5",
    "jpeg_ls": "1.2.840.10008.1.2.4.80",
    "jpeg2000": "1.2.840.10008.1.2.4.90",
}


@pytest.fixture
def dataset_jpeg() -> Iterator[Path]:
    """A 224x224 baseline JPEG from the dataset's test split."""
    path = DATASET / "test" / "benign" / "1.jpg"
    if not path.is_file():
        pytest.skip(f"dataset image {path} not found: these tests need the skin-cancer-mvb data set")
    yield path


def decoded(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.array(im.convert("RGB"), dtype=np.int16)


def gray(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.array(im.convert("L"), dtype=np.int16)


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def assert_rgb(image: LoadedImage) -> None:
    assert image.pixels.dtype == np.uint8
    assert image.pixels.ndim == 3 and image.pixels.shape[2] == 3
    assert image.pixels.flags.c_contiguous and image.pixels.flags.writeable


def png_bytes(width: int, height: int, *, bit_depth: int = 8, color_type: int = 2, raw: bytes = b"") -> bytes:
    """A PNG written by hand: IHDR as given, one IDAT holding `raw` (filter bytes included)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    idat = zlib.compress(raw or b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def reason_of(path: Path) -> str:
    with pytest.raises(UnreadableImageError) as caught:
        read_image(path)
    assert str(caught.value) == caught.value.reason
    return caught.value.reason


def test_pillow_safety_switches_keep_their_defaults() -> None:
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    default_limit = int(1024 * 1024 * 1024 // 4 // 3)
    assert default_limit == Image.MAX_IMAGE_PIXELS


def test_a_dataset_jpeg_decodes_to_the_same_rgb_pixels_as_pillow() -> None:
    image = read_image(SAMPLE_JPEG)
    assert_rgb(image)
    assert image.format == "jpeg" and image.dicom is None
    assert np.array_equal(image.pixels, decoded(SAMPLE_JPEG))
    assert "shape=(224, 224, 3)" in repr(image)


@pytest.mark.parametrize(
    ("save_as", "suffix", "expected"),
    [
        ("PNG", ".jpg", "png"),
        ("TIFF", ".png", "tiff"),
        ("BMP", ".dcm", "bmp"),
        ("WEBP", ".tif", "webp"),
        ("JPEG", ".png", "jpeg"),
        ("GIF", ".jpeg", "gif"),
    ],
)
def test_the_format_comes_from_the_content_not_the_suffix(
    tmp_path: Path, save_as: str, suffix: str, expected: str
) -> None:
    path = tmp_path / f"lesion{suffix}"
    with Image.open(SAMPLE_JPEG) as im:
        im.save(path, format=save_as, **({"lossless": True} if save_as == "WEBP" else {}))
    image = read_image(path)
    assert_rgb(image)
    assert image.format == expected
    if save_as in ("PNG", "TIFF", "BMP", "WEBP"):
        assert np.array_equal(image.pixels, decoded(SAMPLE_JPEG))


@pytest.mark.parametrize("syntax", factory.SYNTAXES)
def test_each_dicom_transfer_syntax_decodes_like_the_source_jpeg(
    tmp_path: Path, dataset_jpeg: Path, syntax: str
) -> None:
    path = factory.make_dicom(dataset_jpeg, tmp_path / f"{syntax}.dcm", syntax=syntax)
    image = read_image(path)
    assert_rgb(image)
    assert image.format == "dicom"
    assert pydicom.dcmread(path).file_meta.TransferSyntaxUID == EXPECTED_SYNTAX[syntax]
    difference = mean_abs_diff(image.pixels, decoded(dataset_jpeg))
    if syntax == "jpeg_baseline_ybr":  # the same JPEG bytes, decoded by another library
        assert difference < 3
    else:
        assert difference == 0


def test_a_subsampled_jpeg_in_dicom_is_ybr_full_422_and_comes_out_as_rgb(
    tmp_path: Path, dataset_jpeg: Path
) -> None:
    subsampled = tmp_path / "subsampled.jpg"
    with Image.open(dataset_jpeg) as im:
        im.save(subsampled, quality=90, subsampling="4:2:0")
    path = factory.make_dicom(subsampled, tmp_path / "ybr422.dcm", syntax="jpeg_baseline_ybr")
    assert pydicom.dcmread(path).PhotometricInterpretation == "YBR_FULL_422"
    assert mean_abs_diff(read_image(path).pixels, decoded(subsampled)) < 3


def test_uncompressed_ybr_full_dicom_comes_out_as_rgb(tmp_path: Path) -> None:
    path = factory.make_ybr_full_dicom(SAMPLE_JPEG, tmp_path / "ybr.dcm")
    assert mean_abs_diff(read_image(path).pixels, decoded(SAMPLE_JPEG)) < 1


def test_the_committed_sample_dicom_matches_its_jpeg() -> None:
    image = read_image(SAMPLE_DICOM)
    assert pydicom.dcmread(SAMPLE_DICOM).file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.50"
    assert mean_abs_diff(image.pixels, decoded(SAMPLE_JPEG)) < 3


@pytest.mark.parametrize(
    ("name", "tolerance"),
    [
        ("SC_rgb_rle_16bit.dcm", 0),  # 16 bits stored, scaled to 8
        ("SC_rgb_rle_32bit.dcm", 0),
        ("SC_rgb_jpeg_gdcm.dcm", 0),  # JPEG Lossless SV1, which pydicom cannot encode
        ("SC_rgb_gdcm_KY.dcm", 0),  # JPEG 2000 from GDCM
        ("SC_ybr_full_422_uncompressed.dcm", 3),
        ("SC_rgb_dcmtk_+eb+cy+s2.dcm", 3),  # JPEG Baseline, YBR_FULL_422 from dcmtk
        ("SC_rgb_dcmtk_+eb+cy+n1.dcm", 3),  # JPEG Baseline, YBR_FULL
        ("SC_rgb_dcmtk_+eb+cr.dcm", 3),  # JPEG Baseline, RGB without colour transform
        ("SC_rgb_jls_lossy_line.dcm", 3),  # JPEG-LS near-lossless
    ],
)
def test_dicom_files_written_by_other_toolkits_decode_like_the_rle_reference(
    name: str, tolerance: int
) -> None:
    """pydicom's bundled test files: one 100x100 RGB image written by dcmtk, GDCM and pydicom."""
    reference, path = get_testdata_file("SC_rgb_rle.dcm"), get_testdata_file(name)
    if reference is None or path is None:
        pytest.skip("pydicom's bundled test files are not installed")
    image = read_image(Path(path))
    assert_rgb(image)
    assert mean_abs_diff(image.pixels, read_image(Path(reference)).pixels) <= tolerance


@pytest.mark.parametrize(
    "name",
    ["SC_rgb_small_odd_big_endian.dcm", "image_dfl.dcm", "JPGExtended.dcm", "GDCMJ2K_TextGBR.dcm"],
)
def test_other_dicom_encodings_decode_to_rgb(name: str) -> None:
    """Big endian, deflated, 12-bit JPEG Extended and JPEG 2000 with YBR_RCT."""
    path = get_testdata_file(name)
    if path is None:
        pytest.skip("pydicom's bundled test files are not installed")
    assert_rgb(read_image(Path(path)))


def test_dicom_info_keeps_uids_body_site_and_acquisition_date(tmp_path: Path) -> None:
    path = factory.make_dicom(SAMPLE_JPEG, tmp_path / "info.dcm", syntax="explicit_le")
    ds = pydicom.dcmread(path)
    info = read_image(path).dicom
    assert info is not None
    assert info.study_uid == ds.StudyInstanceUID and info.series_uid == ds.SeriesInstanceUID
    assert info.sop_uid == ds.SOPInstanceUID
    assert info.sop_class_uid == factory.DERMOSCOPY_SOP
    assert info.body_site == "Skin of back"
    assert info.acquisition_date == "20240115103000"


def test_dicom_body_site_falls_back_to_body_part_examined(tmp_path: Path) -> None:
    path = factory.make_dicom(SAMPLE_JPEG, tmp_path / "site.dcm", syntax="explicit_le", body_site=None)
    info = read_image(path).dicom
    assert info is not None and info.body_site == "SKIN"


@pytest.mark.parametrize(
    "sop_class",
    [factory.VL_PHOTOGRAPHIC_SOP, factory.SECONDARY_CAPTURE_SOP, "1.2.840.10008.5.1.4.1.1.7.4"],
)
def test_other_photograph_sop_classes_are_read(tmp_path: Path, sop_class: str) -> None:
    path = factory.make_dicom(SAMPLE_JPEG, tmp_path / "sop.dcm", syntax="explicit_le", sop_class=sop_class)
    assert np.array_equal(read_image(path).pixels, decoded(SAMPLE_JPEG))


@pytest.mark.parametrize(
    ("bits_stored", "monochrome1", "signed"),
    [(8, False, False), (12, False, False), (16, False, False), (16, True, False), (12, False, True)],
)
def test_monochrome_dicom_becomes_gray_rgb_scaled_to_8_bits(
    tmp_path: Path, bits_stored: int, monochrome1: bool, signed: bool
) -> None:
    path = factory.make_monochrome_dicom(
        SAMPLE_JPEG, tmp_path / "mono.dcm", bits_stored=bits_stored, monochrome1=monochrome1, signed=signed
    )
    pixels = read_image(path).pixels
    assert np.array_equal(pixels[..., 0], pixels[..., 2])
    assert np.abs(pixels[..., 0].astype(np.int16) - gray(SAMPLE_JPEG)).max() <= 1


def test_palette_color_dicom_is_expanded_through_its_lut(tmp_path: Path) -> None:
    path = factory.make_palette_dicom(SAMPLE_JPEG, tmp_path / "palette.dcm")
    assert np.array_equal(read_image(path).pixels, factory.palette_rgb(SAMPLE_JPEG))


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    path = tmp_path / "rotated.jpg"
    with Image.open(SAMPLE_JPEG) as im:
        exif = Image.Exif()
        exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
        im.crop((0, 0, 224, 112)).save(path, exif=exif.tobytes())
    pixels = read_image(path).pixels
    assert pixels.shape == (224, 112, 3)
    assert np.array_equal(pixels, np.rot90(decoded(path), k=-1))


@pytest.mark.parametrize("save_as", ["JPEG", "TIFF"])
def test_cmyk_is_converted_to_rgb(tmp_path: Path, save_as: str) -> None:
    path = tmp_path / f"cmyk.{save_as.lower()}"
    with Image.open(SAMPLE_JPEG) as im:
        im.convert("CMYK").save(path, format=save_as, quality=95)
    assert mean_abs_diff(read_image(path).pixels, decoded(SAMPLE_JPEG)) < 2


@pytest.mark.parametrize(
    ("mode", "suffix"), [("L", ".png"), ("I;16", ".png"), ("I;16B", ".tif"), ("I", ".tif"), ("F", ".tif")]
)
def test_grayscale_and_16_bit_images_become_gray_rgb(tmp_path: Path, mode: str, suffix: str) -> None:
    luminance = gray(SAMPLE_JPEG)
    choices: dict[str, np.ndarray] = {
        "L": luminance.astype(np.uint8),
        "I;16": luminance.astype(np.uint16) * 257,  # full 16-bit range: read back divided by 257
        "I;16B": (luminance.astype(np.uint16) * 257).astype(">u2"),
        "I": luminance.astype(np.int32) * 257,
        "F": luminance.astype(np.float32) / 255,
    }
    values = choices[mode]
    path = tmp_path / f"gray{suffix}"
    im = Image.fromarray(values)
    assert im.mode == mode
    im.save(path)
    pixels = read_image(path).pixels
    assert np.array_equal(pixels[..., 0], pixels[..., 1])
    assert np.abs(pixels[..., 0].astype(np.int16) - luminance).max() <= 1


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
def test_transparent_pixels_are_composited_on_white(tmp_path: Path, mode: str) -> None:
    with Image.open(SAMPLE_JPEG) as im:
        opaque = im.convert(mode.replace("A", "") or "RGB") if mode != "P" else im.quantize(255)
    options: dict[str, Any] = {}
    if mode == "P":
        opaque.putpalette((opaque.getpalette() or []) + [0, 0, 0])  # index 255: a colour no pixel uses yet
        transparent = opaque.copy()
        transparent.paste(255, (0, 0, 112, 224))
        options["transparency"] = 255
    else:
        alpha = Image.new("L", opaque.size, 255)
        alpha.paste(0, (0, 0, 112, 224))
        transparent = opaque.copy()
        transparent.putalpha(alpha)
    path = tmp_path / "transparent.png"
    transparent.save(path, **options)
    pixels = read_image(path).pixels
    assert (pixels[:, :112] == 255).all()
    expected = np.array(opaque.convert("RGB"))[:, 112:]
    assert np.array_equal(pixels[:, 112:], expected)


def test_a_48_bit_rgb_png_is_reduced_to_8_bits(tmp_path: Path) -> None:
    values = (np.arange(16 * 16 * 3, dtype=np.uint32).reshape(16, 16, 3) * 85 % 65536).astype(">u2")
    rows = b"".join(b"\0" + row.tobytes() for row in values)
    path = tmp_path / "rgb48.png"
    path.write_bytes(png_bytes(16, 16, bit_depth=16, color_type=2, raw=rows))
    pixels = read_image(path).pixels
    assert pixels.shape == (16, 16, 3)
    assert np.abs(pixels.astype(np.int32) - values.astype(np.int32) / 257).max() <= 1


def test_a_multipage_tiff_scores_the_first_page(tmp_path: Path) -> None:
    path = tmp_path / "pages.tif"
    red, blue = Image.new("RGB", (32, 24), (200, 0, 0)), Image.new("RGB", (32, 24), (0, 0, 200))
    red.save(path, save_all=True, append_images=[blue])
    image = read_image(path)
    assert image.format == "tiff"
    assert (image.pixels == (200, 0, 0)).all()


def test_draft_decodes_a_large_jpeg_downscaled_but_never_below_the_draft_size(
    tmp_path: Path, dataset_jpeg: Path
) -> None:
    path = tmp_path / "large.jpg"
    with Image.open(dataset_jpeg) as im:
        im.resize((4000, 3000)).save(path, quality=85)
    height, width, _ = read_image(path, draft_size=224).pixels.shape
    assert 224 <= height < 3000 and 224 <= width < 4000
    assert read_image(path).pixels.shape == (3000, 4000, 3)


def test_draft_size_is_ignored_for_formats_other_than_jpeg(tmp_path: Path) -> None:
    path = tmp_path / "large.png"
    Image.new("RGB", (900, 700), (10, 20, 30)).save(path)
    assert read_image(path, draft_size=224).pixels.shape == (700, 900, 3)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


def _truncated_copy(src: Path, dst: Path, fraction: float) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


def _png_copy(tmp: Path) -> Path:
    with Image.open(SAMPLE_JPEG) as im:
        im.save(tmp / "full.png")
    return tmp / "full.png"


def _resized_dicom(tmp: Path) -> Path:
    path = factory.make_dicom(SAMPLE_JPEG, tmp / "resized.dcm", syntax="explicit_le")
    ds = pydicom.dcmread(path)
    ds.Rows = ds.Columns = 10000
    ds.save_as(path)
    return path


def _photometric_dicom(tmp: Path) -> Path:
    path = factory.make_dicom(SAMPLE_JPEG, tmp / "argb.dcm", syntax="explicit_le")
    ds = pydicom.dcmread(path)
    ds.PhotometricInterpretation = "ARGB"
    ds.save_as(path)
    return path


def _garbled_jpeg_ls(tmp: Path) -> Path:
    path = factory.make_dicom(SAMPLE_JPEG, tmp / "garbled.dcm", syntax="jpeg_ls")
    data = bytearray(path.read_bytes())
    rng = random.Random(1)
    for i in range(len(data) - 1500, len(data) - 100):
        data[i] = rng.randrange(256)
    path.write_bytes(bytes(data))
    return path


def _without_preamble(tmp: Path) -> Path:
    path = factory.make_dicom(SAMPLE_JPEG, tmp / "raw.dcm", syntax="explicit_le")
    path.write_bytes(path.read_bytes()[132:])
    return path


TS = "DICOM transfer syntax"
BAD_INPUTS: dict[str, tuple[Callable[[Path], Path], str]] = {
    "empty file": (lambda t: _write(t / "empty.jpg", b""), "empty file (0 bytes)"),
    "text named .jpg": (
        lambda t: _write(t / "note.jpg", b"not a picture\n" * 20),
        "not an image: unrecognised file content",
    ),
    "format outside the allow-list (PPM)": (
        lambda t: _write(t / "lesion.ppm", b"P6\n2 2\n255\n" + b"\0" * 12),
        "not an image: unrecognised file content",
    ),
    "truncated JPEG": (
        lambda t: _truncated_copy(SAMPLE_JPEG, t / "cut.jpg", 0.6),
        "truncated or damaged image data",
    ),
    "truncated PNG": (
        lambda t: _truncated_copy(_png_copy(t), t / "cut.png", 0.6),
        "truncated or damaged image data",
    ),
    "directory": (lambda t: _mkdir(t / "folder.jpg"), "is a directory"),
    "missing file": (lambda t: t / "missing.jpg", "file not found"),
    "PNG claiming 100000x100000": (
        lambda t: _write(t / "bomb.png", png_bytes(100000, 100000)),
        "image too large: 10000000000 pixels (limit 89478485)",
    ),
    "PNG in the bomb-warning band": (
        lambda t: _write(t / "big.png", png_bytes(10000, 9000)),
        "image too large: 90000000 pixels (limit 89478485)",
    ),
    "DICOM without pixel data": (
        lambda t: factory.make_dicom(SAMPLE_JPEG, t / "nopix.dcm", syntax="explicit_le", with_pixels=False),
        "DICOM has no pixel data",
    ),
    "DICOM JPEG XL": (
        lambda t: factory.make_unsupported_syntax_dicom(SAMPLE_JPEG, t / "jxl.dcm"),
        # pydicom names JPEG XL once a package that registers its UIDs (pynetdicom) has been imported.
        (
            f"{TS} unknown (1.2.840.10008.1.2.4.110) cannot be decoded",
            f"{TS} JPEG XL Lossless (1.2.840.10008.1.2.4.110) cannot be decoded",
        ),
    ),
    "DICOM MPEG-4": (
        lambda t: factory.make_unsupported_syntax_dicom(
            SAMPLE_JPEG, t / "mp4.dcm", syntax_uid=factory.MPEG4_AVC_HIGH
        ),
        f"{TS} MPEG-4 AVC/H.264 High Profile / Level 4.1 (1.2.840.10008.1.2.4.102) cannot be decoded",
    ),
    "DICOM private syntax": (
        lambda t: factory.make_unsupported_syntax_dicom(
            SAMPLE_JPEG, t / "private.dcm", syntax_uid=factory.PRIVATE_SYNTAX
        ),
        f"{TS} unknown ({factory.PRIVATE_SYNTAX}) cannot be decoded",
    ),
    "DICOM corrupt header": (
        lambda t: factory.make_corrupt_header_dicom(t / "corrupt.dcm"),
        "damaged DICOM header",
    ),
    "DICOM multi-frame": (
        lambda t: factory.make_multiframe_dicom(SAMPLE_JPEG, t / "multi.dcm", frames=3),
        "multi-frame DICOM (3 frames) is not supported",
    ),
    "DICOM CT image": (
        lambda t: factory.make_dicom(SAMPLE_JPEG, t / "ct.dcm", syntax="rle", sop_class=factory.CT_IMAGE_SOP),
        "DICOM SOP class CT Image Storage (1.2.840.10008.5.1.4.1.1.2)"
        " is not a photograph this screener scores",
    ),
    "DICOM truncated native pixels": (
        lambda t: _truncated_copy(
            factory.make_dicom(SAMPLE_JPEG, t / "full.dcm", syntax="explicit_le"), t / "cut.dcm", 0.8
        ),
        "damaged or truncated DICOM pixel data",
    ),
    "DICOM truncated encapsulated pixels": (
        lambda t: _truncated_copy(
            factory.make_dicom(SAMPLE_JPEG, t / "full.dcm", syntax="jpeg2000"), t / "cut.dcm", 0.8
        ),
        "damaged or truncated DICOM data set (no SOP class UID)",
    ),
    "DICOM garbled JPEG-LS stream": (_garbled_jpeg_ls, "damaged or truncated DICOM pixel data"),
    "DICOM claiming 10000x10000": (_resized_dicom, "image too large: 100000000 pixels (limit 89478485)"),
    "DICOM ARGB": (_photometric_dicom, "DICOM photometric interpretation ARGB is not supported"),
    "DICOM without preamble": (_without_preamble, "not an image: unrecognised file content"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_inputs_are_unreadable_with_a_reason(tmp_path: Path, case: str) -> None:
    build, expected = BAD_INPUTS[case]
    assert reason_of(build(tmp_path)) in (expected if isinstance(expected, tuple) else (expected,))


def test_a_file_without_read_permission_is_unreadable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = shutil.copy(SAMPLE_JPEG, tmp_path / "locked.jpg")
    os.chmod(path, 0)
    if os.geteuid() == 0:  # root reads anything: make open() fail the way it would for a user

        def refuse(self: Path, *args: object, **kwargs: object) -> object:
            raise PermissionError(13, "Permission denied", str(self))

        monkeypatch.setattr(Path, "open", refuse)
    assert reason_of(Path(path)) == "permission denied"


def test_patient_identifiers_never_reach_results_errors_or_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    texts = []
    for syntax in factory.SYNTAXES:
        image = read_image(factory.make_dicom(SAMPLE_JPEG, tmp_path / f"{syntax}.dcm", syntax=syntax))
        texts += [repr(image), repr(image.dicom)]
    for case, (build, _) in BAD_INPUTS.items():
        if "DICOM" not in case:
            continue
        with pytest.raises(UnreadableImageError) as caught:
            read_image(build(_mkdir(tmp_path / case.replace(" ", "_"))))
        texts += [str(caught.value), repr(caught.value)]
    texts.append(caplog.text)
    assert caplog.records, "expected the reader to log at DEBUG"
    for text in texts:
        for token in PATIENT_TOKENS:
            assert token not in text


def _garbage() -> dict[str, bytes]:
    rng = random.Random(20240115)
    jpeg = SAMPLE_JPEG.read_bytes()
    dicom = SAMPLE_DICOM.read_bytes()
    cases = {f"random {n} bytes": rng.randbytes(n) for n in (1, 7, 132, 4096)}
    prefixes = {
        "DICM preamble": b"\0" * 128 + b"DICM",
        "PNG signature": b"\x89PNG\r\n\x1a\n",
        "JPEG SOI": b"\xff\xd8\xff\xe0",
        "TIFF little-endian": b"II*\0",
        "TIFF big-endian": b"MM\0*",
        "GIF": b"GIF89a",
        "BMP": b"BM",
        "WebP": b"RIFF\0\0\0\0WEBPVP8 ",
    }
    for name, prefix in prefixes.items():
        for n in (0, 16, 3000):
            cases[f"{name} then {n} random bytes"] = prefix + rng.randbytes(n)
    for i in range(6):  # valid files with a few bytes overwritten, from header to pixel data
        for name, data in (("JPEG", jpeg), ("DICOM", dicom)):
            mutated = bytearray(data)
            for _ in range(8):
                mutated[rng.randrange(len(data))] = rng.randrange(256)
            cases[f"{name} with bytes overwritten #{i}"] = bytes(mutated)
    cases["DICOM cut inside the file meta"] = dicom[:170]
    cases["JPEG cut after SOI"] = jpeg[:20]
    return cases


GARBAGE = _garbage()


@pytest.mark.parametrize("case", GARBAGE)
def test_garbage_never_raises_anything_but_unreadable_image_error(tmp_path: Path, case: str) -> None:
    path = _write(tmp_path / "garbage.jpg", GARBAGE[case])
    try:
        image = read_image(path)
    except UnreadableImageError as exc:
        assert exc.reason
    else:  # a few overwritten bytes can leave a decodable image
        assert_rgb(image)


LIBRARY_ERRORS = [
    InvalidDicomError("bad"),
    UnidentifiedImageError("bad"),
    Image.DecompressionBombError("Image size (999999999 pixels) exceeds limit"),
    OSError("bad"),
    EOFError("bad"),
    SyntaxError("bad"),
    ValueError("bad"),
    KeyError("bad"),
    IndexError("bad"),
    TypeError("bad"),
    AttributeError("bad"),
    struct.error("bad"),
    zlib.error("bad"),
    NotImplementedError("bad"),
    RuntimeError("bad"),
    OverflowError("bad"),
    ZeroDivisionError("bad"),
    UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad"),
    MemoryError(),
]


@pytest.mark.parametrize("boundary", ["Image.open", "pydicom.dcmread", "Dataset.pixel_array"])
@pytest.mark.parametrize("error", LIBRARY_ERRORS, ids=lambda e: type(e).__name__)
def test_every_library_exception_is_translated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, boundary: str, error: Exception
) -> None:
    def fail(*args: object, **kwargs: object) -> object:
        raise error

    if boundary == "Image.open":
        monkeypatch.setattr(Image, "open", fail)
        path = SAMPLE_JPEG
    elif boundary == "pydicom.dcmread":
        monkeypatch.setattr(pydicom, "dcmread", fail)
        path = SAMPLE_DICOM
    else:
        monkeypatch.setattr(Dataset, "pixel_array", property(fail))
        path = SAMPLE_DICOM
    with pytest.raises(UnreadableImageError) as caught:
        read_image(path)
    assert caught.value.__cause__ is error
