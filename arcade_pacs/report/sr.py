"""The study's result as a DICOM Comprehensive 3D SR with a TID 1500 Measurement Report.

Built only from highdicom's typed templates, shaped as IHE AI Results (AIR) asks:

- root TID 1500, Procedure Reported = coronary angiography, the algorithm as device observer;
- first, one study-level TID 1501 group: stenosis present if any run is, the highest probability;
- then one TID 1501 group per analysed instance (cine run): tracking identifier and UID,
  finding stenosis present/absent, probability (UCUM ``1``), TID 4019 algorithm identification
  with its parameters, and the source image with ``ReferencedFrameNumber`` = the keyframes;
- one TID 1410 group per marked window (an image region, SCOORD POLYLINE, on its frame);
- Contributing Equipment (purpose: Processing Equipment) naming the model and its Device UID;
- VerificationFlag UNVERIFIED, CompletionFlag COMPLETE, a Series Description that says it is a
  research result, and Predecessor Documents when it replaces an earlier SR of the study.
"""

from __future__ import annotations

from dataclasses import dataclass

import highdicom as hd
import numpy as np
from pydicom import Dataset
from pydicom.uid import generate_uid

from arcade_pacs import __version__
from arcade_pacs.findings import Finding, Region
from arcade_pacs.pipeline.scores import INSTANCE_TOP_K
from arcade_pacs.pipeline.tensors import FRAME_SIZE, GRID, WINDOW_SIZE, WINDOW_STRIDE
from arcade_pacs.report import codes

MANUFACTURER = "ARCADE PACS"
SERIES_DESCRIPTION = "ARCADE stenosis AI - research use, not for diagnosis"
SERIES_NUMBER = 9901
MAX_REGIONS_PER_INSTANCE = 6
_GRID_SIDE = round(len(GRID) ** 0.5)
TTA_PARAMETER = "tta=original+horizontal flip, mean"
FRAME_PARAMETER = (
    f"frame=max over {_GRID_SIDE}x{_GRID_SIDE} windows of {WINDOW_SIZE}px at stride {WINDOW_STRIDE} "
    f"({FRAME_SIZE}px frame)"
)
INSTANCE_PARAMETER = f"instance=mean of top {INSTANCE_TOP_K} keyframe probabilities"
"""Algorithm parameters (TID 4019) derived from the pipeline's own constants, never restated."""
DISCLAIMER = (
    "Research use only: the ARCADE stenosis classifier has not been clinically validated; "
    "this result must not be used for diagnosis."
)


@dataclass(frozen=True)
class ModelIdentity:
    """What the SR says about the model that produced a result."""

    name: str
    version: str
    device_uid: str


@dataclass(frozen=True)
class InstanceResult:
    """One analysed instance: its header (no pixels needed), its finding and the model behind it."""

    source: Dataset
    finding: Finding
    model: ModelIdentity | None = None


def _is_multiframe(ds: Dataset) -> bool:
    return int(ds.get("NumberOfFrames", 1) or 1) > 1


def _algorithm(result: InstanceResult, model: ModelIdentity) -> hd.sr.AlgorithmIdentification:
    f = result.finding
    params = [
        f"threshold={f.threshold:.4f}",
        TTA_PARAMETER,
        FRAME_PARAMETER,
        INSTANCE_PARAMETER,
        f"keyframes={','.join(str(n) for n in f.frame_numbers)}",
        f"tta_original={f.tta_original:.4f}",
        f"tta_flipped={f.tta_flipped:.4f}",
    ]
    return hd.sr.AlgorithmIdentification(
        name=model.name[:64], version=model.version[:64], parameters=params, manufacturer=MANUFACTURER
    )


def _probability(value: float) -> hd.sr.Measurement:
    """The probability of the group's finding (its algorithm is identified on the group)."""
    return hd.sr.Measurement(name=codes.PROBABILITY, value=round(float(value), 6), unit=codes.UNIT_NO_UNITS)


def _finding(present: bool) -> hd.sr.QualitativeEvaluation:
    return hd.sr.QualitativeEvaluation(name=codes.STENOSIS, value=codes.presence(present))


def _frames(ds: Dataset, numbers: list[int]) -> list[int] | None:
    """Referenced Frame Numbers only for multi-frame images (PS3.3 C.18.3.1)."""
    return sorted(set(numbers)) if _is_multiframe(ds) and numbers else None


def _label(ds: Dataset, index: int) -> str:
    series = ds.get("SeriesNumber")
    number = ds.get("InstanceNumber")
    if series is not None and number is not None:
        return f"Run series {series} image {number}"
    return f"Run {index}"


def _region_group(result: InstanceResult, region: Region, label: str, algorithm) -> hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations:
    x0, y0, x1, y1 = region.box
    rows, cols = int(result.source.Rows), int(result.source.Columns)
    x0, x1 = float(np.clip(x0, 0, cols)), float(np.clip(x1, 0, cols))
    y0, y1 = float(np.clip(y0, 0, rows)), float(np.clip(y1, 0, rows))
    outline = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]], dtype=np.float64)
    source = hd.sr.SourceImageForRegion.from_source_image(
        result.source, referenced_frame_numbers=_frames(result.source, [region.frame_number])
    )
    return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=generate_uid(), identifier=f"{label} frame {region.frame_number} region"[:64]
        ),
        referenced_region=hd.sr.ImageRegion(
            graphic_type=hd.sr.GraphicTypeValues.POLYLINE, graphic_data=outline, source_image=source
        ),
        finding_type=codes.STENOSIS,
        algorithm_id=algorithm,
        finding_sites=[hd.sr.FindingSite(codes.FINDING_SITE_CORONARY_ARTERY)],
        measurements=[_probability(region.probability)],
        qualitative_evaluations=[_finding(True)],
    )


def _selected_regions(result: InstanceResult) -> list[Region]:
    """The marked windows worth drawing: instance positive, strongest first, capped."""
    if not result.finding.present:
        return []
    regions = sorted(result.finding.regions, key=lambda r: -r.probability)
    return regions[:MAX_REGIONS_PER_INSTANCE]


def build_sr(
    results: list[InstanceResult],
    *,
    model: ModelIdentity,
    series_instance_uid: str,
    sop_instance_uid: str,
    instance_number: int,
    predecessor: Dataset | None = None,
) -> hd.sr.Comprehensive3DSR:
    """Build the study's SR from the results of its analysed instances (at least one)."""
    if not results:
        raise ValueError("an SR needs at least one analysed instance")
    observer = hd.sr.ObservationContext(
        observer_device_context=hd.sr.ObserverContext(
            observer_type=codes.DEVICE_OBSERVER,
            observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
                uid=model.device_uid,
                name=model.name[:64],
                manufacturer_name=MANUFACTURER,
                model_name=model.version[:64],
            ),
        )
    )
    summary_algorithm = hd.sr.AlgorithmIdentification(
        name=model.name[:64], version=model.version[:64], manufacturer=MANUFACTURER,
        parameters=["study=present if any run is present", "probability=highest run probability"],
    )
    any_present = any(r.finding.present for r in results)
    groups: list = [
        hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier="Study summary"),
            finding_type=codes.STENOSIS,
            algorithm_id=summary_algorithm,
            finding_sites=[hd.sr.FindingSite(codes.FINDING_SITE_CORONARY_ARTERY)],
            measurements=[_probability(max(r.finding.probability for r in results))],
            qualitative_evaluations=[_finding(any_present)],
            source_images=[
                hd.sr.SourceImageForMeasurementGroup.from_source_image(
                    r.source, referenced_frame_numbers=_frames(r.source, r.finding.frame_numbers)
                )
                for r in results
            ],
        )
    ]
    for index, result in enumerate(results, start=1):
        algorithm = _algorithm(result, result.model or model)
        label = _label(result.source, index)
        groups.append(
            hd.sr.MeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=label[:64]),
                finding_type=codes.STENOSIS,
                algorithm_id=algorithm,
                finding_sites=[hd.sr.FindingSite(codes.FINDING_SITE_CORONARY_ARTERY)],
                measurements=[_probability(result.finding.probability)],
                qualitative_evaluations=[_finding(result.finding.present)],
                source_images=[
                    hd.sr.SourceImageForMeasurementGroup.from_source_image(
                        result.source, referenced_frame_numbers=_frames(result.source, result.finding.frame_numbers)
                    )
                ],
            )
        )
        for region in _selected_regions(result):
            groups.append(_region_group(result, region, label, algorithm))

    report = hd.sr.MeasurementReport(
        observation_context=observer,
        procedure_reported=codes.PROCEDURE_CORONARY_ANGIOGRAPHY,
        imaging_measurements=groups,
        title=codes.DOCUMENT_TITLE,
    )
    equipment = hd.ContributingEquipment(
        manufacturer=MANUFACTURER,
        purpose_of_reference=codes.PROCESSING_EQUIPMENT,
        manufacturer_model_name=model.name[:64],
        software_versions=[f"arcade-pacs {__version__}", model.version[:64]],
        contribution_description=DISCLAIMER[:1024],
    )
    sr = hd.sr.Comprehensive3DSR(
        evidence=[r.source for r in results],
        content=report,
        series_instance_uid=series_instance_uid,
        series_number=SERIES_NUMBER,
        sop_instance_uid=sop_instance_uid,
        instance_number=instance_number,
        manufacturer=MANUFACTURER,
        is_complete=True,
        is_final=False,
        is_verified=False,
        previous_versions=[predecessor] if predecessor is not None else None,
        contributing_equipment=[equipment],
        series_description=SERIES_DESCRIPTION,
    )
    sr.ContributingEquipmentSequence[0].DeviceUID = model.device_uid
    sr.SoftwareVersions = [f"arcade-pacs {__version__}"]
    sr.ManufacturerModelName = "ARCADE PACS stenosis plugin"
    return sr
