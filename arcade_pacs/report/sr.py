"""The study's result as a DICOM Comprehensive 3D SR with a TID 1500 Measurement Report.

Built from highdicom's typed templates and content items, shaped as IHE AI Results (AIR) asks
and so that a web viewer (OHIF Viewer v3) opens it, draws it and tracks it:

- root TID 1500, Procedure Reported = coronary angiography, the algorithm as device observer;
- every measurement group under Imaging Measurements carries spatial coordinates, because
  viewers place each group on an image frame (OHIF fails on a group without any);
- first, the study summary (TID 1501): stenosis present if any analysed run is, "Indeterminate"
  when none is but some run could not be analysed, else absent; the highest run probability,
  INFERRED FROM the frames (whole-frame outlines) that gave it;
- one TID 1501 group per analysed instance (cine run): tracking identifier and UID, finding
  stenosis present/absent, probability (UCUM ``1``) INFERRED FROM the outlines of the keyframes
  it averages, TID 4019 algorithm identification with its parameters, and the source image
  with ``ReferencedFrameNumber`` = the keyframes;
- one TID 1410 group per marked window (image region, SCOORD POLYLINE, on its frame), whose
  Probability NUM is also INFERRED FROM a copy of that SCOORD (TID 1419 is extensible), which is
  where viewers that import measurements (OHIF's Cornerstone adapters) look for it;
- one TID 1410 group per run that could not be analysed: its whole first frame as the region,
  stenosis "Not Evaluated" and the reason as a Comment; the document is then PARTIAL;
- Contributing Equipment (purpose: Processing Equipment) naming the model and its Device UID;
- VerificationFlag UNVERIFIED, CompletionFlag COMPLETE (PARTIAL when a run failed), a Series
  Description that says it is a research result, and Predecessor Documents when it replaces an
  earlier SR of the study.

Every content item and attribute is made by highdicom's constructors, so what highdicom validates
stays validated; the two things its templates cannot say are added in :func:`beyond_template`
(content) and :func:`beyond_highdicom_header` (document), each citing the standard. The equipment
identity and the Algorithm Identification come from :mod:`arcade_pacs.report.identity`, shared
with the result images and presentation states; what is drawn (regions, keyframes) from
:mod:`arcade_pacs.report.marks`.

``scp/CONFORMANCE.md`` (section 3) says why each choice, and what a strict TID 1500 reader finds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import highdicom as hd
import numpy as np
from pydicom import Dataset
from pydicom.uid import generate_uid

from arcade_pacs.core.findings import Finding, Region
from arcade_pacs.dicom.identity import one_patient
from arcade_pacs.pipeline.scores import INSTANCE_TOP_K
from arcade_pacs.pipeline.tensors import FRAME_SIZE, GRID, WINDOW_SIZE, WINDOW_STRIDE
from arcade_pacs.report import codes
from arcade_pacs.report.identity import (
    DISCLAIMER,
    LO,
    MANUFACTURER,
    ModelIdentity,
    algorithm_identification,
    contributing_equipment,
    equipment,
)
from arcade_pacs.report.marks import (
    MAX_REGIONS_PER_INSTANCE,
    best_keyframes,
    clipped_box,
    outline,
    region_comment,
    selected_regions,
    whole_frame,
)

__all__ = ["DISCLAIMER", "MANUFACTURER", "MAX_REGIONS_PER_INSTANCE", "ModelIdentity", "region_comment",
           "FailedRun", "InstanceResult", "build_sr", "incomplete_description"]

SERIES_DESCRIPTION = "ARCADE stenosis AI - research use, not for diagnosis"
SERIES_NUMBER = 9901
MAX_REASON_CHARS = 1024
_GRID_SIDE = round(len(GRID) ** 0.5)
TTA_PARAMETER = "tta=original+horizontal flip, mean"
FRAME_PARAMETER = (
    f"frame=max over {_GRID_SIDE}x{_GRID_SIDE} windows of {WINDOW_SIZE}px at stride {WINDOW_STRIDE} "
    f"({FRAME_SIZE}px frame)"
)
INSTANCE_PARAMETER = f"instance=mean of top {INSTANCE_TOP_K} keyframe probabilities"
"""Algorithm parameters (TID 4019) derived from the pipeline's own constants, never restated."""
STUDY_SUMMARY = "Study summary"
NOT_ANALYSED = "not analysed"


@dataclass(frozen=True)
class InstanceResult:
    """One analysed instance: its header (no pixels needed), its finding and the model behind it.

    ``window_scores`` (keyframe number -> TTA mean per grid window) and ``path`` (the stored
    file) are what the result image needs besides, ``instance_id`` the run's database row; the
    SR reads none of them.
    """

    source: Dataset
    finding: Finding
    model: ModelIdentity | None = None
    window_scores: dict[int, list[float]] = field(default_factory=dict)
    path: str | None = None
    instance_id: int | None = None


@dataclass(frozen=True)
class FailedRun:
    """One instance received but not analysed: its header and why (the job's last error)."""

    source: Dataset
    reason: str
    instance_id: int | None = None


def _is_multiframe(ds: Dataset) -> bool:
    return int(ds.get("NumberOfFrames", 1) or 1) > 1


def _run_parameters(finding: Finding) -> list[str]:
    """TID 4019 Algorithm Parameters of one run's result: how its numbers were made."""
    return [
        f"threshold={finding.threshold:.4f}",
        TTA_PARAMETER,
        FRAME_PARAMETER,
        INSTANCE_PARAMETER,
        f"keyframes={','.join(str(n) for n in finding.frame_numbers)}",
        f"tta_original={finding.tta_original:.4f}",
        f"tta_flipped={finding.tta_flipped:.4f}",
    ]


SUMMARY_PARAMETERS = ["study=present if any run is present", "probability=highest run probability"]


def _box_outline(ds: Dataset, box) -> np.ndarray:
    return outline(clipped_box(int(ds.Rows), int(ds.Columns), box))


def _whole_frame(ds: Dataset) -> np.ndarray:
    """The outline of a whole frame (:func:`arcade_pacs.report.marks.whole_frame`)."""
    return outline(whole_frame(int(ds.Rows), int(ds.Columns)))


def _reference(kind, ds: Dataset, numbers: list[int]):
    """A highdicom source-image reference (``kind``: SourceImageForRegion, ...ForMeasurementGroup) to
    frames of ``ds``: what ``kind.from_source_image`` makes, without its checks of the source's IOD,
    which were 15 % of a 10-run study's SR (about 150 references); the frames are checked here."""
    frames = _frames(ds, numbers)
    n = int(ds.get("NumberOfFrames") or 1)
    if frames and not all(1 <= f <= n for f in frames):
        raise ValueError(f"frame numbers {frames} outside 1..{n} of the referenced image")
    return kind(referenced_sop_class_uid=ds.SOPClassUID, referenced_sop_instance_uid=ds.SOPInstanceUID,
                referenced_frame_numbers=frames)


def _source_for_region(ds: Dataset, frame_number: int) -> hd.sr.SourceImageForRegion:
    return _reference(hd.sr.SourceImageForRegion, ds, [frame_number])


def _inferred_from(ds: Dataset, frame_number: int, polyline: np.ndarray) -> hd.sr.CoordinatesForMeasurement:
    """TID 300 -> TID 320: the SCOORD (SELECTED FROM its image and frame) a value is INFERRED FROM."""
    return hd.sr.CoordinatesForMeasurement(
        graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
        graphic_data=polyline,
        source_image=_source_for_region(ds, frame_number),
        purpose=codes.SOURCE_OF_MEASUREMENT,
    )


def _probability(value: float, inferred_from: list | None = None) -> hd.sr.Measurement:
    """The probability of the group's finding (its algorithm is identified on the group)."""
    return hd.sr.Measurement(
        name=codes.PROBABILITY, value=round(float(value), 6), unit=codes.UNIT_NO_UNITS,
        referenced_coordinates=inferred_from or None,
    )


def _keyframe_coordinates(result: InstanceResult) -> list[hd.sr.CoordinatesForMeasurement]:
    """Whole-frame outlines of the keyframes a run's probability is the mean of, best first."""
    return [_inferred_from(result.source, n, _whole_frame(result.source)) for n in best_keyframes(result.finding)]


def _finding(value) -> hd.sr.QualitativeEvaluation:
    """Stenosis = Present / Absent / Indeterminate / Not Evaluated."""
    if isinstance(value, bool):
        value = codes.presence(value)
    return hd.sr.QualitativeEvaluation(name=codes.STENOSIS, value=value)


def _comment(text: str) -> hd.sr.TextContentItem:
    """A Comment (121106, DCM) in a measurement group: a coded question with a text answer."""
    return hd.sr.TextContentItem(name=codes.COMMENT, value=text, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)


def _frames(ds: Dataset, numbers: list[int]) -> list[int] | None:
    """Referenced Frame Numbers only for multi-frame images (PS3.3 C.18.3.1)."""
    return sorted(set(numbers)) if _is_multiframe(ds) and numbers else None


def run_label(ds: Dataset, index: int) -> str:
    """A run's name for people: series and instance number (no ':' -- viewers parse those as tool names)."""
    series = ds.get("SeriesNumber")
    number = ds.get("InstanceNumber")
    if series is not None and number is not None:
        return f"Run series {series} image {number}"
    return f"Run {index}"


def beyond_template(group, *, inferred: hd.sr.Measurement | None = None, comment: str | None = None):
    """The two things the plugin adds to a measurement group that highdicom's templates cannot say.

    This is the only place the SR's content tree is changed after a highdicom constructor
    built it; everything else is exactly what the templates make.

    - ``inferred``: a Probability NUM with its INFERRED FROM SCOORD, in place of the group's NUM
      of the same name. highdicom's TID 1410 constructor refuses referenced coordinates under a
      measurement, but TID 1419 (ROI Measurements) is an extensible template and the
      Comprehensive 3D SR IOD (PS3.3 A.35.13, Table A.35.13-2) lets a NUM be INFERRED FROM a
      SCOORD; that is where viewers that import the region as a measurement (OHIF's Cornerstone
      adapters) look for its geometry.
    - ``comment``: a Comment (121106, DCM) TEXT item, CONTAINS, at the end of the group: TID 1501
      and TID 1410 are extensible templates (PS3.16), and a viewer shows the text as the
      measurement's label. highdicom's templates take no free text.
    """
    items = group[0].ContentSequence
    if inferred is not None:
        for index, item in enumerate(items):
            if item.ValueType == "NUM" and item.ConceptNameCodeSequence[0].CodeValue == inferred.name.value:
                items[index:index + 1] = [inferred[0]]  # (a slice: highdicom checks lists of items)
                break
        else:
            raise ValueError(f"group has no {inferred.name.meaning} to replace")
    if comment is not None:
        items.append(_comment(comment))
    return group


def _region_group(result: InstanceResult, region: Region, label: str, algorithm,
                  rank: int) -> hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations:
    """One selected region (TID 1410). Its tracking identifier names the run, the frame and the
    region's rank in the run (strongest first), so two regions on one frame stay apart in a
    viewer's measurement list, which shows the identifier's text."""
    polyline = _box_outline(result.source, region.box)
    group = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=generate_uid(), identifier=f"{label} frame {region.frame_number} region {rank}"[:LO]
        ),
        referenced_region=hd.sr.ImageRegion(
            graphic_type=hd.sr.GraphicTypeValues.POLYLINE, graphic_data=polyline,
            source_image=_source_for_region(result.source, region.frame_number),
        ),
        finding_type=codes.STENOSIS,
        algorithm_id=algorithm,
        finding_sites=[hd.sr.FindingSite(codes.FINDING_SITE_CORONARY_ARTERY)],
        measurements=[_probability(region.probability)],
        qualitative_evaluations=[_finding(True)],
    )
    coordinates = _inferred_from(result.source, region.frame_number, polyline)
    return beyond_template(group, inferred=_probability(region.probability, [coordinates]),
                           comment=region_comment(region))


def _run_group(result: InstanceResult, label: str, algorithm) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    f = result.finding
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=label[:LO]),
        finding_type=codes.STENOSIS,
        algorithm_id=algorithm,
        finding_sites=[hd.sr.FindingSite(codes.FINDING_SITE_CORONARY_ARTERY)],
        measurements=[_probability(f.probability, _keyframe_coordinates(result))],
        qualitative_evaluations=[_finding(f.present)],
        source_images=[_reference(hd.sr.SourceImageForMeasurementGroup, result.source, f.frame_numbers)],
    )


def failed_reason(failed: FailedRun) -> str:
    """Why a run was not analysed, as one line (a label, not a log): the SR's Comment and the result image's caption."""
    reason = " ".join(failed.reason.split())
    return f"{NOT_ANALYSED}: {reason}"[:MAX_REASON_CHARS]


def _failed_group(failed: FailedRun, label: str, algorithm) -> hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations:
    """A run that could not be analysed: where (its whole first frame), that it was not evaluated, and why."""
    group = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=f"{label} {NOT_ANALYSED}"[:LO]),
        referenced_region=hd.sr.ImageRegion(
            graphic_type=hd.sr.GraphicTypeValues.POLYLINE, graphic_data=_whole_frame(failed.source),
            source_image=_source_for_region(failed.source, 1),
        ),
        finding_type=codes.STENOSIS,
        algorithm_id=algorithm,
        finding_sites=[hd.sr.FindingSite(codes.FINDING_SITE_CORONARY_ARTERY)],
        qualitative_evaluations=[_finding(codes.NOT_EVALUATED)],
    )
    return beyond_template(group, comment=failed_reason(failed))


def _summary_group(results: list[InstanceResult], failed: list[FailedRun], algorithm):
    """The study's result: present if any analysed run is; never "absent" while a run is unassessed."""
    best = max(results, key=lambda r: r.finding.probability)
    if any(r.finding.present for r in results):
        value = codes.PRESENT
    else:
        value = codes.INDETERMINATE if failed else codes.ABSENT
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=STUDY_SUMMARY),
        finding_type=codes.STENOSIS,
        algorithm_id=algorithm,
        finding_sites=[hd.sr.FindingSite(codes.FINDING_SITE_CORONARY_ARTERY)],
        measurements=[_probability(best.finding.probability, _keyframe_coordinates(best))],
        qualitative_evaluations=[_finding(value)],
        source_images=[_reference(hd.sr.SourceImageForMeasurementGroup, r.source, r.finding.frame_numbers)
                       for r in results],
    )
    if failed:
        total = len(results) + len(failed)
        group = beyond_template(group, comment=incomplete_description(len(failed), total))
    return group


def incomplete_description(n_failed: int, n_runs: int) -> str:
    """Why a study's assessment is incomplete (the summary's Comment and Completion Flag Description)."""
    return f"incompletely assessed: {n_failed} of {n_runs} runs {NOT_ANALYSED}"


def beyond_highdicom_header(sr: hd.sr.Comprehensive3DSR, *, completion_description: str | None) -> hd.sr.Comprehensive3DSR:
    """The one document attribute highdicom's SR constructor has no parameter for.

    Completion Flag Description (0040,A492), SR Document General Module (PS3.3 C.17.2, Type 3,
    LO): why a PARTIAL document is partial.
    """
    if completion_description is not None:
        sr.CompletionFlagDescription = completion_description[:LO]
    return sr


def build_sr(
    results: list[InstanceResult],
    *,
    model: ModelIdentity,
    series_instance_uid: str,
    sop_instance_uid: str,
    instance_number: int,
    failed: list[FailedRun] | None = None,
    predecessor: Dataset | None = None,
) -> hd.sr.Comprehensive3DSR:
    """Build the study's SR from its analysed instances and those that could not be analysed.

    At least one instance is needed, and all belong to one patient (the reporter leaves out
    any other; this refuses them again, :class:`~arcade_pacs.dicom.identity.MixedPatients`, so one
    patient's result never lands in another's report). Instances are listed in the order given
    (the reporter gives them in order of arrival); sources should have passed
    :func:`arcade_pacs.report.headers.sanitize_header`.
    """
    failed = list(failed or [])
    if not results and not failed:
        raise ValueError("an SR needs at least one instance")
    one_patient([r.source for r in results] + [f.source for f in failed])
    observer = hd.sr.ObservationContext(
        observer_device_context=hd.sr.ObserverContext(
            observer_type=codes.DEVICE_OBSERVER,
            observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
                uid=model.device_uid,
                name=model.name[:LO],
                manufacturer_name=MANUFACTURER,
                model_name=model.version[:LO],
            ),
        )
    )
    # With no analysed run there is no study-level result to summarise: the failed runs'
    # groups and the PARTIAL completion flag say everything there is to say.
    groups: list = [_summary_group(results, failed, algorithm_identification(model, SUMMARY_PARAMETERS))] if results else []
    for index, result in enumerate(results, start=1):
        algorithm = algorithm_identification(result.model or model, _run_parameters(result.finding))
        label = run_label(result.source, index)
        groups.append(_run_group(result, label, algorithm))
        for rank, region in enumerate(selected_regions(result.finding), start=1):
            groups.append(_region_group(result, region, label, algorithm, rank))
    if failed:
        plain = algorithm_identification(model)
        for index, run in enumerate(failed, start=len(results) + 1):
            groups.append(_failed_group(run, run_label(run.source, index), plain))

    report = hd.sr.MeasurementReport(
        observation_context=observer,
        procedure_reported=codes.PROCEDURE_CORONARY_ANGIOGRAPHY,
        imaging_measurements=groups,
        title=codes.DOCUMENT_TITLE,
    )
    sr = hd.sr.Comprehensive3DSR(
        evidence=[r.source for r in results] + [f.source for f in failed],
        content=report,
        series_instance_uid=series_instance_uid,
        series_number=SERIES_NUMBER,
        sop_instance_uid=sop_instance_uid,
        instance_number=instance_number,
        is_complete=not failed,
        is_final=False,
        is_verified=False,
        previous_versions=[predecessor] if predecessor is not None else None,
        contributing_equipment=contributing_equipment(model),
        series_description=SERIES_DESCRIPTION,
        **equipment(model),
    )
    n_runs = len(results) + len(failed)
    return beyond_highdicom_header(
        sr, completion_description=incomplete_description(len(failed), n_runs) if failed else None)
