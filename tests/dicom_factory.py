"""Build real DICOM files from a dataset JPEG, for tests and for the sample inbox.

`make_dicom` writes a Dermoscopic Photography object (or another SOP class) in one of `SYNTAXES`:

- "explicit_le", "implicit_le": uncompressed RGB, 8 bits.
- "jpeg_baseline_ybr": the source JPEG's own bytes, encapsulated unchanged (no re-encoding, so no
  extra loss). The photometric interpretation follows the JPEG's chroma sampling, as PS3.5 8.2.1 asks:
  YBR_FULL_422 when the chroma is subsampled, YBR_FULL when it is not (the dataset's JPEGs are 4:4:4).
- "rle", "jpeg_ls", "jpeg2000": lossless, encoded by `Dataset.compress` with the installed plugins
  (pydicom/pylibjpeg-rle, pyjpegls, pylibjpeg-openjpeg). pydicom 3.0.2 has no encoder for JPEG Baseline,
  JPEG Lossless or HTJ2K, which is why the JPEG Baseline file reuses the source bytes.

UIDs are derived from the file names (`generate_uid` with fixed entropy) and dates are fixed, so
running the same call twice writes the same bytes. Each file keeps a realistic PatientName and
PatientID so that tests can check they never reach LoadedImage, errors or logs.
Other helpers write the inputs the reader must refuse or convert (monochrome, palette, YBR_FULL,
no pixel data, undecodable transfer syntax, damaged header, multi-frame).
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image, JpegImagePlugin
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels.processing import convert_color_space
from pydicom.sequence import Sequence
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

DERMOSCOPY_SOP = "1.2.840.10008.5.1.4.1.1.77.1.7"
VL_PHOTOGRAPHIC_SOP = "1.2.840.10008.5.1.4.1.1.77.1.4"
SECONDARY_CAPTURE_SOP = "1.2.840.10008.5.1.4.1.1.7"
CT_IMAGE_SOP = "1.2.840.10008.5.1.4.1.1.2"
JPEG_XL_LOSSLESS = "1.2.840.10008.1.2.4.110"  # newer than pydicom 3.0.2: no name, no decoder
MPEG4_AVC_HIGH = "1.2.840.10008.1.2.4.102"  # known to pydicom, no decoder
PRIVATE_SYNTAX = "1.2.826.0.1.3680043.8.498.999.1"

SYNTAXES = ("explicit_le", "implicit_le", "jpeg_baseline_ybr", "rle", "jpeg_ls", "jpeg2000")
LOSSLESS = {"rle": RLELossless, "jpeg_ls": JPEGLSLossless, "jpeg2000": JPEG2000Lossless}
ACQUISITION_DATETIME = "20240115103000"


def rgb_pixels(src_jpeg: Path) -> npt.NDArray[np.uint8]:
    """Pillow's RGB decode of `src_jpeg`: the reference the DICOM pixels are compared with."""
    with Image.open(src_jpeg) as im:
        return np.array(im.convert("RGB"), dtype=np.uint8)


def base_dataset(
    dst: Path,
    *,
    sop_class: str = DERMOSCOPY_SOP,
    syntax_uid: str = ExplicitVRLittleEndian,
    body_site: str | None = "Skin of back",
    patient_name: str = "Doe^Jane",
    patient_id: str = "PID-12345",
) -> Dataset:
    """A dataset with file meta, identifiers, dates and body site, but no pixel module yet."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = UID(sop_class)
    ds.file_meta.TransferSyntaxUID = UID(syntax_uid)
    ds.SOPClassUID = UID(sop_class)
    ds.StudyInstanceUID = generate_uid(entropy_srcs=["skinscreen-study", dst.stem])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=["skinscreen-series", dst.stem])
    ds.SOPInstanceUID = generate_uid(entropy_srcs=["skinscreen-sop", dst.name])
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = "19700101"
    ds.Modality = "XC"
    ds.StudyDate = ds.ContentDate = ds.AcquisitionDate = ACQUISITION_DATETIME[:8]
    ds.ContentTime = ACQUISITION_DATETIME[8:]
    ds.AcquisitionDateTime = ACQUISITION_DATETIME
    ds.BodyPartExamined = "SKIN"
    if body_site is not None:
        region = Dataset()
        # A local coding scheme: the code is a test fixture, not a claim about SNOMED CT.
        region.CodeValue = "BACK"
        region.CodingSchemeDesignator = "99SKINSCREEN"
        region.CodeMeaning = body_site
        ds.AnatomicRegionSequence = Sequence([region])
    ds.InstanceNumber = 1
    return ds


def set_pixel_module(
    ds: Dataset, arr: npt.NDArray[np.generic], *, photometric: str, bits_stored: int
) -> None:
    """Fill the Image Pixel module for an (H, W) or (H, W, 3) array, native (uncompressed) encoding."""
    samples = 1 if arr.ndim == 2 else arr.shape[-1]
    ds.Rows, ds.Columns = int(arr.shape[0]), int(arr.shape[1])
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = photometric
    if samples > 1:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = arr.dtype.itemsize * 8
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if arr.dtype.kind == "i" else 0
    ds.PixelData = np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<")).tobytes()


def write(ds: Dataset, dst: Path) -> Path:
    """Save `ds` as a DICOM Part 10 file (preamble, DICM, file meta) and return `dst`."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    syntax = ds.file_meta.TransferSyntaxUID
    if syntax.is_transfer_syntax:
        ds.save_as(dst, enforce_file_format=True)
        return dst
    # A syntax pydicom does not know: encode the data set as explicit VR little endian (what every
    # encapsulated syntax uses). pydicom refuses to write an unknown non-private UID, so write a private
    # placeholder of the same length and swap the bytes.
    placeholder = syntax if syntax.is_private else UID("1.2.3." + "9" * (len(syntax) - 6))
    ds.file_meta.TransferSyntaxUID = placeholder
    ds.save_as(dst, enforce_file_format=True, implicit_vr=False, little_endian=True)
    ds.file_meta.TransferSyntaxUID = syntax
    data = dst.read_bytes()
    assert data.count(placeholder.encode()) == 1
    dst.write_bytes(data.replace(placeholder.encode(), syntax.encode()))
    return dst


def make_dicom(
    src_jpeg: Path,
    dst: Path,
    *,
    syntax: str,
    sop_class: str = DERMOSCOPY_SOP,
    with_pixels: bool = True,
    frames: int = 1,
    body_site: str | None = "Skin of back",
    patient_name: str = "Doe^Jane",
    patient_id: str = "PID-12345",
) -> Path:
    """Write `src_jpeg` as a DICOM file in `syntax` (one of SYNTAXES); `frames` > 1 repeats the image."""
    if syntax not in SYNTAXES:
        raise ValueError(f"syntax must be one of {SYNTAXES}, not {syntax!r}")
    syntax_uid = {"implicit_le": ImplicitVRLittleEndian, "jpeg_baseline_ybr": JPEGBaseline8Bit}.get(
        syntax, ExplicitVRLittleEndian
    )
    ds = base_dataset(
        dst,
        sop_class=sop_class,
        syntax_uid=syntax_uid,
        body_site=body_site,
        patient_name=patient_name,
        patient_id=patient_id,
    )
    arr = rgb_pixels(src_jpeg)
    set_pixel_module(ds, arr, photometric="RGB", bits_stored=8)
    if frames > 1:
        ds.NumberOfFrames = frames
        ds.PixelData = ds.PixelData * frames
    if syntax == "jpeg_baseline_ybr":
        jpeg = src_jpeg.read_bytes()
        with Image.open(src_jpeg) as im:
            subsampled = JpegImagePlugin.get_sampling(im) not in (0, -1)
        ds.PhotometricInterpretation = "YBR_FULL_422" if subsampled else "YBR_FULL"
        ds.PixelData = encapsulate([jpeg] * frames)
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
        ds.LossyImageCompression = "01"
        ds.LossyImageCompressionMethod = "ISO_10918_1"
    elif syntax in LOSSLESS:
        ds.compress(LOSSLESS[syntax], generate_instance_uid=False)
    if not with_pixels:
        del ds.PixelData
    return write(ds, dst)


def make_ybr_full_dicom(src_jpeg: Path, dst: Path) -> Path:
    """Uncompressed YBR_FULL (explicit VR little endian) made from the source's RGB pixels."""
    ds = base_dataset(dst)
    ybr = convert_color_space(rgb_pixels(src_jpeg), "RGB", "YBR_FULL")
    set_pixel_module(ds, ybr.astype(np.uint8), photometric="YBR_FULL", bits_stored=8)
    return write(ds, dst)


def make_monochrome_dicom(
    src_jpeg: Path, dst: Path, *, bits_stored: int = 8, monochrome1: bool = False, signed: bool = False
) -> Path:
    """Grayscale DICOM whose luminance, scaled to `bits_stored`, is Pillow's "L" of the source.

    MONOCHROME1 stores the inverted values (white is 0), as that interpretation means.
    `signed` stores PixelRepresentation 1 with values shifted down by half the range.
    """
    with Image.open(src_jpeg) as im:
        gray = np.array(im.convert("L"), dtype=np.float64)
    top = 2**bits_stored - 1
    stored = np.rint(gray * top / 255)
    if monochrome1:
        stored = top - stored
    if signed:
        stored = stored - 2 ** (bits_stored - 1)
    dtype = (np.int16 if signed else np.uint16) if bits_stored > 8 else (np.int8 if signed else np.uint8)
    ds = base_dataset(dst, sop_class=SECONDARY_CAPTURE_SOP)
    photometric = "MONOCHROME1" if monochrome1 else "MONOCHROME2"
    set_pixel_module(ds, stored.astype(dtype), photometric=photometric, bits_stored=bits_stored)
    return write(ds, dst)


def make_palette_dicom(src_jpeg: Path, dst: Path) -> Path:
    """PALETTE COLOR DICOM: the source quantised to 256 colours, 16-bit LUT entries.

    Returns the path; the expected RGB is `palette_rgb(src_jpeg)`.
    """
    with Image.open(src_jpeg) as im:
        quantised = im.convert("RGB").quantize(256)
    lut = np.zeros((256, 3), dtype=np.uint16)
    colours = np.array(quantised.getpalette(), dtype=np.uint16).reshape(-1, 3)[:256]
    lut[: len(colours)] = colours * 257  # 8-bit to full 16-bit range
    ds = base_dataset(dst, sop_class=SECONDARY_CAPTURE_SOP)
    set_pixel_module(ds, np.array(quantised, dtype=np.uint8), photometric="PALETTE COLOR", bits_stored=8)
    for i, colour in enumerate(("Red", "Green", "Blue")):
        setattr(ds, f"{colour}PaletteColorLookupTableDescriptor", [256, 0, 16])
        setattr(ds, f"{colour}PaletteColorLookupTableData", lut[:, i].astype("<u2").tobytes())
    return write(ds, dst)


def palette_rgb(src_jpeg: Path) -> npt.NDArray[np.uint8]:
    """The RGB pixels `make_palette_dicom` encodes (the source after quantisation)."""
    with Image.open(src_jpeg) as im:
        quantised = im.convert("RGB").quantize(256)
    return np.array(quantised.convert("RGB"), dtype=np.uint8)


def make_unsupported_syntax_dicom(src_jpeg: Path, dst: Path, *, syntax_uid: str = JPEG_XL_LOSSLESS) -> Path:
    """An encapsulated DICOM whose transfer syntax has no decoder here (the payload is the JPEG)."""
    ds = base_dataset(dst, syntax_uid=syntax_uid)
    set_pixel_module(ds, rgb_pixels(src_jpeg), photometric="RGB", bits_stored=8)
    ds.PixelData = encapsulate([src_jpeg.read_bytes()])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    return write(ds, dst)


def make_corrupt_header_dicom(dst: Path, *, seed: int = 0, size: int = 2048) -> Path:
    """A 128-byte preamble, the DICM magic, then `size` random bytes."""
    rng = random.Random(seed)
    dst.write_bytes(b"\0" * 128 + b"DICM" + bytes(rng.randrange(256) for _ in range(size)))
    return dst


def make_multiframe_dicom(src_jpeg: Path, dst: Path, *, frames: int = 3) -> Path:
    """A multi-frame True Color Secondary Capture holding `frames` copies of the source."""
    return make_dicom(
        src_jpeg, dst, syntax="explicit_le", sop_class="1.2.840.10008.5.1.4.1.1.7.4", frames=frames
    )


# -- metadata fuzzing: files whose header is odd but whose pixels are fine (or a mandatory tag is missing) --

LONG_STUDY_UID = "1.2.826.0.1.3680043.8.498." + "1234567890" * 7  # 96 characters: over the 64 of PS3.5
HUGE_UID = "1.2.826.0.1.3680043.8.498." + "9" * 20_000
# Header values the fuzzed files carry that must never reach a log line (the patient name and ID too).
FUZZ_SECRETS = ("Doe^Jane", "PID-12345", "Mueller^Juergen", "Rücken-背中", "1.2.abc.Smith", "NUL-in-body")
_PRIVATE_CREATOR = "SKINSCREEN FUZZ"


def _with_private_block(ds: Dataset, *, size: int) -> None:
    """A private block (group 0009) holding `size` bytes of OB and a long LO."""
    block = ds.private_block(0x0009, _PRIVATE_CREATOR, create=True)
    block.add_new(0x10, "OB", bytes(range(256)) * (size // 256))
    block.add_new(0x11, "LO", "private note " * 4000)


def _patched(path: Path, old: bytes, new: bytes) -> Path:
    """Swap one byte sequence for another of the same length (VR codes, padding) in a written file."""
    data = path.read_bytes()
    assert data.count(old) == 1, (old, data.count(old))
    path.write_bytes(data.replace(old, new))
    return path


def make_fuzzed_dicom(src_jpeg: Path, dst: Path, *, kind: str) -> Path:
    """A DICOM with one kind of metadata damage (see FUZZ_KINDS); the pixels are `src_jpeg`'s RGB."""
    implicit = kind == "huge_uids"
    ds = base_dataset(dst, syntax_uid=ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian)
    set_pixel_module(ds, rgb_pixels(src_jpeg), photometric="RGB", bits_stored=8)
    if kind == "long_study_uid":
        ds.StudyInstanceUID = LONG_STUDY_UID
    elif kind == "huge_uids":  # implicit VR: a 4-byte length, so a UID far beyond 64 KiB fits the file
        ds.SeriesInstanceUID = HUGE_UID
        ds.SOPInstanceUID = HUGE_UID + "1"
        ds.StudyInstanceUID = LONG_STUDY_UID + ".2"
    elif kind == "long_strings":
        ds.AnatomicRegionSequence[0].CodeMeaning = "Skin of back " * 1000
        ds.AcquisitionDateTime = "2024" * 100
    elif kind == "invalid_uid_chars":  # letters and a name where only digits and dots belong
        ds.StudyInstanceUID = "1.2.abc.Smith"
        ds.SeriesInstanceUID = "Doe^Jane"
    elif kind == "invalid_vr":  # an unknown VR code for body part, written as explicit VR "ZZ"
        ds.BodyPartExamined = "ZZTOP"
        write(ds, dst)
        return _patched(dst, b"\x18\x00\x15\x00CS", b"\x18\x00\x15\x00ZZ")
    elif kind == "wrong_vr":  # a UID element declared as US (2-byte integers) and Rows declared as UI
        write(ds, dst)
        _patched(dst, b"\x20\x00\x0d\x00UI", b"\x20\x00\x0d\x00US")
        return _patched(dst, b"\x28\x00\x10\x00US", b"\x28\x00\x10\x00UI")
    elif kind == "utf8":
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.PatientName = "Mueller^Juergen"
        ds.AnatomicRegionSequence[0].CodeMeaning = "Rücken-背中"
    elif kind == "unknown_charset":  # a character set pydicom does not know, Latin-1 bytes in the value
        ds.SpecificCharacterSet = "ISO_IR 999"
        ds.AnatomicRegionSequence[0].CodeMeaning = b"R\xfccken-\xe9"  # type: ignore[assignment]
    elif kind == "bad_utf8":  # UTF-8 declared, bytes that are not UTF-8
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.AnatomicRegionSequence[0].CodeMeaning = b"Back \xff\xfe\xc3("  # type: ignore[assignment]
    elif kind == "iso2022":
        ds.SpecificCharacterSet = ["", "ISO 2022 IR 87"]
        ds.AnatomicRegionSequence[0].CodeMeaning = "Rücken-背中"
    elif kind == "nul_in_strings":  # NUL and control bytes PostgreSQL text cannot hold
        ds.AnatomicRegionSequence[0].CodeMeaning = "NUL-in-body\x00\x01\x1b[31m"
        ds.StudyInstanceUID = "1.2.3\x00.4"
    elif kind == "huge_private":
        _with_private_block(ds, size=8 * 1024 * 1024)
    elif kind == "missing_uids":
        del ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID  # the file meta keeps its own
    elif kind == "missing_rows":
        del ds.Rows, ds.Columns
    elif kind == "missing_photometric":
        del ds.PhotometricInterpretation
    elif kind == "missing_sop_class":
        del ds.SOPClassUID
    elif kind == "missing_transfer_syntax":
        write(ds, dst)
        # Rename the file meta's Transfer Syntax UID tag to an unused one: the element is gone.
        return _patched(dst, b"\x02\x00\x10\x00UI", b"\x02\x00\x11\x00UI")
    else:
        raise ValueError(f"unknown fuzz kind {kind!r}")
    return write(ds, dst)


# kind -> expected state and a part of the expected reason (None: scored)
FUZZ_KINDS: dict[str, tuple[str, str | None]] = {
    "long_study_uid": ("scored", None),
    "huge_uids": ("scored", None),
    "long_strings": ("scored", None),
    "invalid_uid_chars": ("scored", None),
    "invalid_vr": ("failed", "damaged DICOM header"),
    "wrong_vr": ("failed", "damaged DICOM header"),
    "utf8": ("scored", None),
    "unknown_charset": ("scored", None),
    "bad_utf8": ("scored", None),
    "iso2022": ("scored", None),
    "nul_in_strings": ("scored", None),
    "huge_private": ("scored", None),
    "missing_uids": ("scored", None),
    "missing_rows": ("failed", "damaged or truncated DICOM pixel data"),
    "missing_photometric": ("failed", "photometric interpretation (invalid or missing)"),
    "missing_sop_class": ("failed", "no SOP class UID"),
    "missing_transfer_syntax": ("failed", "damaged DICOM header"),
}
