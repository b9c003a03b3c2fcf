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
