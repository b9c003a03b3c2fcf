"""Results as DICOM objects (highdicom): a TID 1500 Comprehensive SR and a Grad-CAM Secondary Capture.

Both lie in the source image's study, in series of their own, and take the patient and study
modules from the source file at build time (nothing of the patient is kept in the database). Both
carry the IHE AI Results (AIR) attribution: a Contributing Equipment item with the purpose
(Newcode1, 99IHE, "Processing Algorithm"), manufacturer "skinscreen", model name, software version
= model version, and a Device UID derived from the model version (so it changes with the model).

The SR holds one image-level measurement group (TID 1501) that references the source SOP instance:
the qualitative evaluation "Malignancy suspicion" = Present/Absent (the flag), the probability
(DCM 111047 "Probability of cancer"), the threshold in force and, as text, the operating point it
implements. It is UNVERIFIED when first made; after a reviewer's verdict a new VERIFIED version
names the verdict and the reviewer, and points at the version it supersedes.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import highdicom as hd
import numpy as np
import numpy.typing as npt
import pydicom
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sr.codedict import codes
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

from skinscreen import __version__

MANUFACTURER = "skinscreen"
LOCAL = "99SKINSCREEN"
SR_SERIES_NUMBER = 9701
SC_SERIES_NUMBER = 9702
CAPTION = "SCREENING AID - NOT A DIAGNOSIS"

AIR_PURPOSE = hd.sr.CodedConcept("Newcode1", "99IHE", "Processing Algorithm")
MALIGNANCY_SUSPICION = hd.sr.CodedConcept("MALSUSP", LOCAL, "Malignancy suspicion")
THRESHOLD = hd.sr.CodedConcept("THRESH", LOCAL, "Decision threshold")
OPERATING_POINT = hd.sr.CodedConcept("OPPOINT", LOCAL, "Operating point")
REVIEW_VERDICT = hd.sr.CodedConcept("VERDICT", LOCAL, "Reviewer verdict")
DERMOSCOPY = hd.sr.CodedConcept("DMS", "DCM", "Dermoscopy")
COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"
NO_UNITS = hd.sr.CodedConcept("1", "UCUM", "no units")
VERDICT_CODES = {
    "malignant": codes.SCT.Malignant,
    "benign": codes.SCT.Benign,
    "uncertain": codes.SCT.Indeterminate,
}


@dataclass(frozen=True)
class ResultFacts:
    """What a result says, from the database (no patient data)."""

    model_version: str
    probability: float
    threshold: float
    flagged: bool
    operating_point: str
    sop_instance_uid: str
    instance_number: int = 1


@dataclass(frozen=True)
class Verification:
    """A reviewer's verdict that turns an SR VERIFIED, and the SR version it supersedes."""

    verdict: str
    reviewer: str
    organization: str
    previous_sop_instance_uid: str
    previous_series_uid: str


def device_uid(model_version: str) -> str:
    """A UID for the algorithm, the same for one model version and different for the next."""
    return str(generate_uid(entropy_srcs=["skinscreen-device", model_version]))


def series_uid(study_uid: str, kind: str, model_version: str) -> str:
    """The result series of one kind ("sr", "sc") for one study and model version."""
    return str(generate_uid(entropy_srcs=["skinscreen-series", study_uid, kind, model_version]))


_TYPE2_PATIENT_STUDY = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
)


# Character sets a result keeps as the source declared them: one value, no code extensions.
_SINGLE_BYTE_OR_UTF8 = {
    *(f"ISO_IR {n}" for n in (100, 101, 109, 110, 144, 127, 126, 138, 148, 203, 166, 192)),
    "ISO_IR 13",
    "GB18030",
    "GBK",
}


def read_source(path: Path | str | BinaryIO) -> Dataset:
    """The source DICOM header (no pixels), made fit to build results from, as hospitals' files are
    not always complete: Type 2 patient and study attributes it lacks come empty, a missing Modality
    is "OT" (other) and a missing Series Instance UID one derived from the instance, and text is
    decoded with the declared character set (see `_character_set`)."""
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    for keyword in _TYPE2_PATIENT_STUDY:
        if keyword not in ds:
            setattr(ds, keyword, "")
    if not ds.get("Modality"):
        ds.Modality = "OT"
    if not ds.get("SeriesInstanceUID"):
        ds.SeriesInstanceUID = generate_uid(
            entropy_srcs=["skinscreen-source-series", str(ds.get("SOPInstanceUID", ""))]
        )
    _character_set(ds)
    return ds


def _character_set(ds: Dataset) -> None:
    """Decode every text value, then declare a character set the results can be written in: the
    source's own when it is a single value without code extensions, else UTF-8 (ISO_IR 192) when
    any value is not ASCII (ISO 2022 code extensions, or non-ASCII bytes with no character set
    declared, which pydicom reads as Latin-1), else none."""
    declared = ds.get("SpecificCharacterSet")
    ds.decode()
    values = [declared] if isinstance(declared, str) else [str(v) for v in declared or []]
    if len(values) == 1 and values[0] in _SINGLE_BYTE_OR_UTF8:
        ds.SpecificCharacterSet = values[0]
        return
    if any(not _ascii(elem.value) for elem in ds.iterall() if elem.VR in _TEXT_VRS):
        ds.SpecificCharacterSet = "ISO_IR 192"
    elif "SpecificCharacterSet" in ds:
        del ds.SpecificCharacterSet


_TEXT_VRS = {"SH", "LO", "ST", "LT", "UT", "PN", "UC"}


def _ascii(value: object) -> bool:
    values = value if isinstance(value, list | tuple | MultiValue) else [value]
    return all(str(v).isascii() for v in values)


def _air_equipment(model_version: str) -> Dataset:
    item = Dataset()
    item.Manufacturer = MANUFACTURER
    item.ManufacturerModelName = "skinscreen dermoscopy screening"
    item.SoftwareVersions = [model_version[:64], __version__]
    item.DeviceUID = device_uid(model_version)
    item.PurposeOfReferenceCodeSequence = [AIR_PURPOSE]
    item.ContributionDescription = "Malignancy screening score (MobileNetV2 classifier)"
    return item


def _attribute(ds: Dataset, model_version: str) -> None:
    """IHE AIR attribution on a built object (highdicom only takes DICOM's own purpose codes)."""
    items = list(ds.get("ContributingEquipmentSequence", []))
    ds.ContributingEquipmentSequence = [*items, _air_equipment(model_version)]
    ds.SoftwareVersions = [model_version[:64], __version__]
    ds.ManufacturerModelName = "skinscreen"


def build_sr(source: Dataset, facts: ResultFacts, *, verification: Verification | None = None) -> Dataset:
    """A TID 1500 Comprehensive SR about `source`; VERIFIED with the verdict when `verification` is set."""
    observers: list[hd.sr.ObserverContext] = [
        hd.sr.ObserverContext(
            observer_type=codes.cid270.Device,
            observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
                uid=device_uid(facts.model_version),
                name="skinscreen",
                manufacturer_name=MANUFACTURER,
                model_name=facts.model_version[:64],
            ),
        )
    ]
    if verification is not None:
        observers.insert(
            0,
            hd.sr.ObserverContext(
                observer_type=codes.cid270.Person,
                observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(
                    name=_person_name(verification.reviewer)
                ),
            ),
        )
    algorithm = hd.sr.AlgorithmIdentification(name="skinscreen", version=facts.model_version[:64])
    evaluations = [
        hd.sr.QualitativeEvaluation(
            MALIGNANCY_SUSPICION, codes.DCM.Present if facts.flagged else codes.DCM.Absent
        )
    ]
    if verification is not None:
        evaluations.append(hd.sr.QualitativeEvaluation(REVIEW_VERDICT, VERDICT_CODES[verification.verdict]))
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=str(generate_uid(entropy_srcs=["skinscreen-tracking", str(source.SOPInstanceUID)])),
            identifier="skinscreen malignancy screening",
        ),
        finding_type=codes.SCT.SkinLesion,
        algorithm_id=algorithm,
        qualitative_evaluations=evaluations,
        measurements=[
            hd.sr.Measurement(
                name=codes.DCM.ProbabilityOfCancer,
                value=round(float(facts.probability), 6),
                unit=NO_UNITS,
                algorithm_id=algorithm,
            ),
            hd.sr.Measurement(name=THRESHOLD, value=round(float(facts.threshold), 6), unit=NO_UNITS),
        ],
        source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(source)],
    )
    group[0].ContentSequence.append(
        hd.sr.TextContentItem(
            name=OPERATING_POINT,
            value=facts.operating_point[:1024] or "model default",
            relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
        )
    )
    report = hd.sr.MeasurementReport(
        observation_context=_observation_context(observers),
        procedure_reported=DERMOSCOPY,
        imaging_measurements=[group],
    )
    previous = None
    if verification is not None:
        prior = Dataset()
        prior.StudyInstanceUID = source.StudyInstanceUID
        prior.SeriesInstanceUID = verification.previous_series_uid
        prior.SOPClassUID = COMPREHENSIVE_SR
        prior.SOPInstanceUID = verification.previous_sop_instance_uid
        previous = [prior]
    sr = hd.sr.ComprehensiveSR(
        evidence=[source],
        content=report[0],
        series_instance_uid=series_uid(str(source.StudyInstanceUID), "sr", facts.model_version),
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=facts.sop_instance_uid,
        instance_number=facts.instance_number,
        manufacturer=MANUFACTURER,
        is_complete=verification is not None,
        is_verified=verification is not None,
        verifying_observer_name=_person_name(verification.reviewer) if verification else None,
        verifying_organization=verification.organization if verification else None,
        previous_versions=previous,
        series_description="skinscreen result (AI, screening aid)",
    )
    _attribute(sr, facts.model_version)
    return sr


def _observation_context(observers: list[hd.sr.ObserverContext]) -> hd.sr.ObservationContext:
    person = next((o for o in observers if o.observer_type == codes.cid270.Person), None)
    device = next((o for o in observers if o.observer_type == codes.cid270.Device), None)
    return hd.sr.ObservationContext(observer_person_context=person, observer_device_context=device)


def _person_name(account: str) -> str:
    """An account name as a DICOM PN (no carets or backslashes, 64 characters at most)."""
    clean = "".join(ch for ch in account if ch not in "^=\\") or "reviewer"
    return clean[:63] + "^"  # a family name alone


@dataclass(frozen=True)
class CaptionLayout:
    """Where each line of a burned-in caption goes: a band below the image, lines wrapped to fit it."""

    font: ImageFont.ImageFont | ImageFont.FreeTypeFont
    band: int
    lines: list[tuple[tuple[int, int], str]]


def caption_layout(width: int, height: int, lines: list[str]) -> CaptionLayout:
    """Lay `lines` out below a `width` x `height` image, every line inside it whatever the size.

    The font scales with the width (a 4000-pixel photograph gets large letters, a 224-pixel one
    the smallest readable size) and each line is wrapped at spaces, or inside a word too long to
    fit, so the model version, probability, threshold and flag are never cut off.
    """
    size = max(10, width // 40)
    try:
        font: ImageFont.ImageFont | ImageFont.FreeTypeFont = ImageFont.load_default(size=size)
    except (TypeError, OSError):
        font = ImageFont.load_default()
    margin = max(3, size // 3)
    room = max(1, width - 2 * margin)
    wrapped = [part for line in lines for part in _wrap(line, font=font, room=room)]
    step = size + max(2, size // 3)
    placed = [((margin, height + margin + i * step), text) for i, text in enumerate(wrapped)]
    return CaptionLayout(font=font, band=step * len(wrapped) + 2 * margin, lines=placed)


def _wrap(line: str, *, font: ImageFont.ImageFont | ImageFont.FreeTypeFont, room: int) -> list[str]:
    """`line` in pieces no wider than `room` pixels: at spaces, else inside the word."""
    out: list[str] = []
    current = ""
    for word in line.split(" "):
        candidate = f"{current} {word}" if current else word
        if font.getlength(candidate) <= room:
            current = candidate
            continue
        if current:
            out.append(current)
        current = ""
        for ch in word:  # a word wider than the band (a long model version) is cut where it must be
            if current and font.getlength(current + ch) > room:
                out.append(current)
                current = ""
            current += ch
    return [*out, current] if current else out


def caption_pixels(pixels: npt.NDArray[np.uint8], lines: list[str]) -> npt.NDArray[np.uint8]:
    """The image with a black band below it holding `lines` in white (burned in)."""
    height, width = pixels.shape[:2]
    layout = caption_layout(width, height, lines)
    canvas = Image.new("RGB", (width, height + layout.band), (0, 0, 0))
    canvas.paste(Image.fromarray(pixels), (0, 0))
    draw = ImageDraw.Draw(canvas)
    for xy, text in layout.lines:
        draw.text(xy, text, fill=(255, 255, 255), font=layout.font)
    return np.asarray(canvas, dtype=np.uint8)


def caption_lines(facts: ResultFacts) -> list[str]:
    """The burned-in caption: what the image is, the model, its score, threshold and flag."""
    flag = "FLAGGED" if facts.flagged else "not flagged"
    return [
        CAPTION,
        f"skinscreen {facts.model_version}:",
        f"p={facts.probability:.3f} threshold={facts.threshold:.3f} {flag}",
        "Grad-CAM: areas that raised the score",
    ]


def build_sc(source: Dataset, overlay: npt.NDArray[np.uint8], facts: ResultFacts) -> Dataset:
    """A Secondary Capture of the Grad-CAM overlay, with the screening-aid caption burned in."""
    pixels = caption_pixels(overlay, caption_lines(facts))
    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=source,
        pixel_array=pixels,
        photometric_interpretation="RGB",
        bits_allocated=8,
        coordinate_system="PATIENT",
        series_instance_uid=series_uid(str(source.StudyInstanceUID), "sc", facts.model_version),
        series_number=SC_SERIES_NUMBER,
        sop_instance_uid=facts.sop_instance_uid,
        instance_number=facts.instance_number,
        manufacturer=MANUFACTURER,
        patient_orientation=("L", "F"),
        transfer_syntax_uid=ExplicitVRLittleEndian,
        series_description="skinscreen Grad-CAM (AI, screening aid)",
    )
    # The orientation of a skin photograph is not known: Type 2, so present and empty.
    sc.PatientOrientation = source.get("PatientOrientation") or ""  # type: ignore[assignment]
    sc.Laterality = source.get("Laterality", "") or ""  # Type 2C: unknown for a lesion photograph
    sc.BurnedInAnnotation = "YES"
    sc.ImageComments = CAPTION
    if "Modality" in source:
        sc.Modality = source.Modality
    _attribute(sc, facts.model_version)
    return sc


def encode(ds: Dataset) -> bytes:
    """A built object as a DICOM Part 10 file's bytes."""
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def new_uid() -> str:
    return str(UID(generate_uid()))
