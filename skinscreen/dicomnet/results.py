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


def read_source(path: Path | str | BinaryIO) -> Dataset:
    """The source DICOM header (no pixels); Type 2 patient and study attributes it lacks come empty."""
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    for keyword in _TYPE2_PATIENT_STUDY:
        if keyword not in ds:
            setattr(ds, keyword, "")
    return ds


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


def caption_pixels(pixels: npt.NDArray[np.uint8], lines: list[str]) -> npt.NDArray[np.uint8]:
    """The image with a black band below it holding `lines` in white (burned in)."""
    height, width = pixels.shape[:2]
    size = max(12, width // 40)
    try:
        font: ImageFont.ImageFont | ImageFont.FreeTypeFont = ImageFont.load_default(size=size)
    except (TypeError, OSError):
        font = ImageFont.load_default()
    band = (size + 6) * len(lines) + 8
    canvas = Image.new("RGB", (width, height + band), (0, 0, 0))
    canvas.paste(Image.fromarray(pixels), (0, 0))
    draw = ImageDraw.Draw(canvas)
    for i, line in enumerate(lines):
        draw.text((6, height + 4 + i * (size + 6)), line, fill=(255, 255, 255), font=font)
    return np.asarray(canvas, dtype=np.uint8)


def build_sc(source: Dataset, overlay: npt.NDArray[np.uint8], facts: ResultFacts) -> Dataset:
    """A Secondary Capture of the Grad-CAM overlay, with the screening-aid caption burned in."""
    flag = "FLAGGED" if facts.flagged else "not flagged"
    lines = [
        CAPTION,
        f"skinscreen {facts.model_version}: p={facts.probability:.3f} threshold={facts.threshold:.3f} {flag}",
        "Grad-CAM: areas that raised the score",
    ]
    pixels = caption_pixels(overlay, lines)
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
