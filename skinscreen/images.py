"""Read any supported file into RGB pixels: JPEG, PNG, TIFF (Pillow) and DICOM (pydicom).

`read_image` is the one place every scoring path decodes a file. It returns `LoadedImage` whose
`pixels` are always a C-contiguous, writable uint8 array of shape (H, W, 3), and it raises nothing but
`UnreadableImageError` for a file it cannot use; `reason` says why in plain words. Third-party
errors are translated here, once, with `raise ... from exc`; the reasons never quote library messages,
so no patient identifier from a DICOM header can reach an error, a result row or a log.

Choices:

- The format is sniffed by content, never by suffix: the DICOM "DICM" magic at offset 128, otherwise
  Pillow's own signature checks, limited to `PILLOW_FORMATS`. Formats outside that list are refused
  ("not an image: unrecognised file content"); EPS, for one, would make Pillow run Ghostscript.
  DICOM files without the 128-byte preamble (not Part 10) are not accepted. MPO (multi-picture JPEG
  from phone cameras, opened by the JPEG plugin) is reported as "jpeg"; other formats by their
  lowercased Pillow name.
- Pillow: EXIF orientation is applied. Transparency (RGBA, LA, PA, P or L with tRNS) is composited on
  white, what an image viewer shows, rather than dropped, since fully transparent pixels often hold
  arbitrary colours. CMYK uses Pillow's plain conversion; embedded ICC profiles are ignored (no colour
  management). 16-bit gray (I;16, I;16B...) and 32-bit "I" within 0..65535 are divided by 257, which
  keeps absolute brightness the same from file to file; float "F" within 0..1 is multiplied by 255;
  other "I" and "F" images are min-max scaled. Pillow itself reads 48-bit RGB PNGs as 8-bit RGB
  (it keeps the high byte).
  Multi-page TIFF (and animated GIF/WebP): the first page is scored, nothing else is recorded.
  `draft_size` makes JPEG decode downscaled by a power of two, never below draft_size a side.
- Safety: `ImageFile.LOAD_TRUNCATED_IMAGES` stays False and `load()` runs inside the try, so a
  truncated file fails instead of being padded with gray. `Image.MAX_IMAGE_PIXELS` keeps its default;
  Pillow's DecompressionBombWarning is made an error, so the effective limit is MAX_IMAGE_PIXELS
  (about 89 megapixels, checked before any drafting), and the same limit applies to DICOM Rows x Columns.
  A file larger than `config.MAX_FILE_BYTES` (512 MiB) is refused by its size before a byte is
  decoded: pydicom reads a data set whole, so a 1 GB file would be read only to be refused.
  Both are set once, at import, as process-wide warning filters: `warnings.catch_warnings` around
  each read would not be thread-safe, and the scorers decode in a thread pool. pydicom's own
  warnings are silenced the same way, since their messages can quote header values.
- DICOM (pydicom 3 with the pylibjpeg, pyjpegls and openjpeg plugins): native and compressed transfer
  syntaxes that pydicom has an available decoder for. YCbCr (YBR_FULL, YBR_FULL_422, and JPEG 2000's
  ICT/RCT) comes out as RGB from pydicom's default `as_rgb=True`. MONOCHROME1/2 become gray RGB
  (MONOCHROME1 inverted). Stored values are scaled linearly from their full BitsStored range
  (signed data shifted first) to 0..255; VOI LUTs and windows are ignored, as they are for
  radiology, not photographs. PALETTE COLOR goes through `apply_color_lut`; 16-bit LUT entries are divided
  by 257. Multi-frame objects (NumberOfFrames > 1) are refused rather than guessing which frame to
  score. Only photograph SOP classes are accepted (`PHOTO_SOP_CLASSES`); the single-bit multi-frame
  Secondary Capture class is not. `DicomInfo` keeps UIDs, body site and acquisition date, never
  patient identifiers.
- Errors: the Pillow and pydicom calls sit in `except Exception` blocks, because their plugins raise
  a wide, undocumented set (OSError, SyntaxError, EOFError, ValueError, struct.error, KeyError,
  RuntimeError, NotImplementedError, AttributeError for missing elements...) and a bad file must
  never crash the worker. MemoryError gets its own reason: the pixel limit makes it a property of
  the file far more often than a passing condition, and it is not worth a retry loop.
- Logging: one DEBUG line per file, without its name (the worker owns the INFO line of its unit of
  work, with image and batch ids). pydicom's own logger ("pydicom") is cut off from the log handlers
  and its reading validation is off: both quote header values ("Invalid value for VR UI: '...'").
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import numpy.typing as npt
import pydicom
from PIL import Image, ImageOps, UnidentifiedImageError
from pydicom.dataset import Dataset
from pydicom.pixels.decoders.base import get_decoder
from pydicom.pixels.processing import apply_color_lut
from pydicom.uid import UID

from skinscreen.config import MAX_FILE_BYTES
from skinscreen.errors import UnreadableImageError
from skinscreen.logsafe import silence
from skinscreen.results import DicomInfo

logger = logging.getLogger(__name__)

# Process-wide and set once (see the module docstring): a bomb warning is an error, pydicom is quiet.
warnings.filterwarnings("error", category=Image.DecompressionBombWarning)
warnings.filterwarnings("ignore", module=r"pydicom(\..*)?")
pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
silence("pydicom")  # its lines quote header values; it keeps only its own NullHandler

PILLOW_FORMATS = ("JPEG", "PNG", "TIFF", "BMP", "WEBP", "GIF")
PHOTO_SOP_CLASSES = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.77.1.7",  # Dermoscopic Photography Image Storage
        "1.2.840.10008.5.1.4.1.1.77.1.4",  # VL Photographic Image Storage
        "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture Image Storage
        "1.2.840.10008.5.1.4.1.1.7.2",  # Multi-frame Grayscale Byte Secondary Capture
        "1.2.840.10008.5.1.4.1.1.7.3",  # Multi-frame Grayscale Word Secondary Capture
        "1.2.840.10008.5.1.4.1.1.7.4",  # Multi-frame True Color Secondary Capture
    }
)
_RGB_PHOTOMETRICS = frozenset({"RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT"})
_DAMAGED_IMAGE = "truncated or damaged image data"
_DAMAGED_DICOM_PIXELS = "damaged or truncated DICOM pixel data"
_NO_MEMORY = "not enough memory to decode the image"

Pixels = npt.NDArray[np.uint8]


@dataclass(frozen=True, eq=False)  # eq=False: comparing or hashing arrays field by field fails
class LoadedImage:
    """Decoded pixels, always (H, W, 3) uint8 RGB, with the container format."""

    pixels: Pixels
    format: str
    dicom: DicomInfo | None = None

    def __repr__(self) -> str:
        return f"LoadedImage(shape={self.pixels.shape}, format={self.format!r}, dicom={self.dicom!r})"


def read_image(path: Path | str, *, draft_size: int | None = None) -> LoadedImage:
    """Decode `path`; `draft_size` lets JPEG decoding downscale to at least that many pixels a side."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > MAX_FILE_BYTES:  # refused by its size: pydicom would read it whole first
                raise UnreadableImageError(f"file too large: {size} bytes (limit {MAX_FILE_BYTES})")
            image = decode_image(fh, draft_size=draft_size)
    except FileNotFoundError as exc:
        raise UnreadableImageError("file not found") from exc
    except IsADirectoryError as exc:
        raise UnreadableImageError("is a directory") from exc
    except PermissionError as exc:
        raise UnreadableImageError("permission denied") from exc
    except OSError as exc:  # only open/read reach here: the readers translate their own errors
        raise UnreadableImageError(f"could not read file ({exc.strerror or type(exc).__name__})") from exc
    height, width = image.pixels.shape[:2]
    logger.debug("read a file: %s %dx%d", image.format, width, height)
    return image


def decode_image(fh: BinaryIO, *, draft_size: int | None = None) -> LoadedImage:
    """Decode an open binary file (or bytes in a BytesIO) as `read_image` does.

    The review server uses it on bytes it has already checked against the scored sha256.
    """
    head = fh.read(132)
    if not head:
        raise UnreadableImageError("empty file (0 bytes)")
    fh.seek(0)
    if head[128:132] == b"DICM":
        return _read_dicom(fh)
    return _read_pillow(fh, draft_size=draft_size)


def _too_large(pixels: int | None) -> str:
    if pixels is None:
        return f"image too large: more than {Image.MAX_IMAGE_PIXELS} pixels"
    return f"image too large: {pixels} pixels (limit {Image.MAX_IMAGE_PIXELS})"


def _read_pillow(fh: BinaryIO, *, draft_size: int | None) -> LoadedImage:
    try:
        with Image.open(fh, formats=PILLOW_FORMATS) as opened:
            kind = (opened.format or "unknown").lower()
            if kind == "mpo":
                kind = "jpeg"
            if kind == "jpeg" and draft_size is not None and draft_size > 0:
                opened.draft("RGB", (draft_size, draft_size))
            opened.load()
            frames = int(getattr(opened, "n_frames", 1))
            if frames > 1:
                logger.debug("%d pages or frames, scoring the first", frames)
            ImageOps.exif_transpose(opened, in_place=True)  # no copy: an 81-megapixel PNG is 0.3 GB a copy
            pixels = _pillow_rgb(opened)
    except UnreadableImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        found = re.search(r"\((\d+) pixels\)", str(exc))
        raise UnreadableImageError(_too_large(int(found.group(1)) if found else None)) from exc
    except UnidentifiedImageError as exc:
        raise UnreadableImageError("not an image: unrecognised file content") from exc
    except MemoryError as exc:
        raise UnreadableImageError(_NO_MEMORY) from exc
    except Exception as exc:  # OSError, SyntaxError, EOFError, ValueError, struct.error, zlib.error...
        logger.debug("Pillow failed with %s", type(exc).__name__)
        raise UnreadableImageError(_DAMAGED_IMAGE) from exc
    return LoadedImage(pixels=pixels, format=kind)


def _pillow_rgb(im: Image.Image) -> Pixels:
    """Any Pillow mode to (H, W, 3) uint8; see the module docstring for the scaling choices."""
    if im.mode.startswith("I;16") or im.mode in ("I", "F"):
        values = np.asarray(im)
        low, high = float(values.min()), float(values.max())
        if im.mode != "F" and low >= 0 and high <= 65535:
            gray = ((values.astype(np.uint32) + 128) // 257).astype(np.uint8)
        elif im.mode == "F" and low >= 0 and high <= 1:
            gray = np.rint(values * 255).astype(np.uint8)
        else:
            span = high - low if high > low else 1.0
            gray = np.rint((values.astype(np.float64) - low) * (255 / span)).astype(np.uint8)
        return _gray_to_rgb(gray)
    try:
        if "A" in im.getbands() or "a" in im.getbands() or "transparency" in im.info:
            white = Image.new("RGBA", im.size, (255, 255, 255, 255))
            rgb = Image.alpha_composite(white, im.convert("RGBA")).convert("RGB")
        else:
            rgb = im if im.mode == "RGB" else im.convert("RGB")
    except ValueError as exc:
        raise UnreadableImageError(f"unsupported colour mode {im.mode}") from exc
    return np.array(rgb, dtype=np.uint8, order="C")


def _gray_to_rgb(gray: Pixels) -> Pixels:
    return np.ascontiguousarray(np.repeat(gray[:, :, np.newaxis], 3, axis=2))


def _describe(uid: str) -> str:
    """'Name (uid)' for a UID pydicom knows, 'unknown (uid)' otherwise."""
    name = UID(uid).name
    return f"{name} ({uid})" if name != uid else f"unknown ({uid})"


def _text(value: object) -> str | None:
    text = str(value).strip() if value is not None else ""
    return text or None


def _dicom_info(ds: Dataset) -> DicomInfo:
    """The identifiers worth keeping; patient name, ID and birth date are deliberately left out."""
    body_site = ds.get("BodyPartExamined")
    regions = ds.get("AnatomicRegionSequence")
    if regions and "CodeMeaning" in regions[0]:
        body_site = regions[0].CodeMeaning
    dates = ("AcquisitionDateTime", "AcquisitionDate", "ContentDate", "StudyDate")
    acquired = next((ds.get(k) for k in dates if _text(ds.get(k))), None)
    return DicomInfo(
        study_uid=_text(ds.get("StudyInstanceUID")),
        series_uid=_text(ds.get("SeriesInstanceUID")),
        sop_uid=_text(ds.get("SOPInstanceUID")),
        sop_class_uid=_text(ds.get("SOPClassUID")),
        body_site=_text(body_site),
        acquisition_date=_text(acquired),
    )


def _read_dicom(fh: BinaryIO) -> LoadedImage:
    try:
        ds = pydicom.dcmread(fh)
        info = _dicom_info(ds)
        syntax = _text(ds.file_meta.get("TransferSyntaxUID"))
        frames = int(ds.get("NumberOfFrames") or 1)
        size = int(ds.get("Rows") or 0) * int(ds.get("Columns") or 0)
        has_pixels = "PixelData" in ds
    except Exception as exc:  # InvalidDicomError, EOFError, ValueError, struct.error, KeyError...
        logger.debug("pydicom failed on the header with %s", type(exc).__name__)
        raise UnreadableImageError("damaged DICOM header") from exc
    # Invalid UIDs count as damage, which also keeps stray header bytes out of the reasons below.
    if syntax is None or not UID(syntax).is_valid:
        raise UnreadableImageError("damaged DICOM header")
    if info.sop_class_uid is None:  # pydicom drops the whole data set when the file ends early
        raise UnreadableImageError("damaged or truncated DICOM data set (no SOP class UID)")
    if not UID(info.sop_class_uid).is_valid:
        raise UnreadableImageError("damaged DICOM header")
    if info.sop_class_uid not in PHOTO_SOP_CLASSES:
        sop = _describe(info.sop_class_uid)
        raise UnreadableImageError(f"DICOM SOP class {sop} is not a photograph this screener scores")
    if not has_pixels:
        raise UnreadableImageError("DICOM has no pixel data")
    if frames > 1:
        raise UnreadableImageError(f"multi-frame DICOM ({frames} frames) is not supported")
    if Image.MAX_IMAGE_PIXELS is not None and size > Image.MAX_IMAGE_PIXELS:
        raise UnreadableImageError(_too_large(size))
    try:
        decodable = get_decoder(UID(syntax)).is_available
    except NotImplementedError:
        decodable = False
    if not decodable:
        raise UnreadableImageError(f"DICOM transfer syntax {_describe(syntax)} cannot be decoded")
    try:
        pixels = _dicom_rgb(ds)
    except UnreadableImageError:
        raise
    except MemoryError as exc:
        raise UnreadableImageError(_NO_MEMORY) from exc
    except Exception as exc:  # RuntimeError/ValueError from decoders, AttributeError for missing elements...
        logger.debug("pydicom failed on the pixel data with %s", type(exc).__name__)
        raise UnreadableImageError(_DAMAGED_DICOM_PIXELS) from exc
    return LoadedImage(pixels=pixels, format="dicom", dicom=info)


def _dicom_rgb(ds: Dataset) -> Pixels:
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    if photometric not in _RGB_PHOTOMETRICS | {"MONOCHROME1", "MONOCHROME2", "PALETTE COLOR"}:
        # Quote the value only when it looks like a code string (CS): the header is untrusted text.
        shown = photometric if re.fullmatch(r"[A-Z0-9_ ]{1,16}", photometric) else "(invalid or missing)"
        raise UnreadableImageError(f"DICOM photometric interpretation {shown} is not supported")
    arr = ds.pixel_array  # as_rgb=True by default: YCbCr comes back as RGB
    bits = int(ds.get("BitsStored") or arr.dtype.itemsize * 8)
    signed = int(ds.get("PixelRepresentation") or 0) == 1
    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(arr, ds)
        return _to_uint8(rgb, bits=rgb.dtype.itemsize * 8, signed=False)
    if photometric.startswith("MONOCHROME") and arr.ndim == 2:
        gray = _to_uint8(arr, bits=bits, signed=signed)
        return _gray_to_rgb(255 - gray if photometric == "MONOCHROME1" else gray)
    if arr.ndim == 3 and arr.shape[2] == 3 and photometric in _RGB_PHOTOMETRICS:
        return _to_uint8(arr, bits=bits, signed=signed)
    raise UnreadableImageError(f"DICOM pixel array of shape {arr.shape} does not match {photometric}")


def _to_uint8(arr: npt.NDArray[np.generic], *, bits: int, signed: bool) -> Pixels:
    """Scale stored values from their full `bits` range (signed: shifted up first) to 0..255."""
    if arr.dtype == np.uint8 and bits == 8:
        return np.ascontiguousarray(arr)
    low = -(2 ** (bits - 1)) if signed else 0
    top = 2**bits - 1
    values = np.clip(arr.astype(np.float32) - low, 0, top)
    return np.ascontiguousarray(np.rint(values * (255 / top)).astype(np.uint8))
