"""Database rows to the admin's response bodies: one place shared by the API and the dashboard.

The dashboard renders exactly what the API answers (the same :mod:`schemas` objects), so a
number on a page is the number a client reads from ``/studies/{uid}``.
"""

from __future__ import annotations

import logging

import pydicom

from arcade_pacs.admin.schemas import (
    AssociationOut,
    DeliveryOut,
    JobSummary,
    KeyframeOut,
    RegionOut,
    ReportOut,
    ResultObjectOut,
    RunOut,
    RunResult,
    StudyDetail,
    StudySummary,
    TTAViews,
)
from arcade_pacs.db.tables import Association, Delivery, Instance, Report, Result, ResultObject, Study
from arcade_pacs.jobs import JobState
from arcade_pacs.report.marks import selected_regions
from arcade_pacs.send.outbox import DeliveryState
from arcade_pacs.settings import ObjectKind

log = logging.getLogger(__name__)


def keyframe_tta(window_scores: list[float], original: list[float] | None,
                 flipped: list[float] | None) -> TTAViews | None:
    """Both TTA views of the keyframe's best window (the one behind its probability).

    The run's ``tta_original``/``tta_flipped`` are the same views averaged over its top frames
    (:func:`arcade_pacs.pipeline.analyse.classify_keyframes`).
    """
    if original is None or flipped is None:
        return None
    best = max(range(len(window_scores)), key=window_scores.__getitem__)
    return TTAViews(original=original[best], flipped=flipped[best])


def headline(r: Result) -> dict:
    """What every view of a stored result starts with: its finding, the model version, when."""
    f = r.finding
    return {
        "probability": f.probability,
        "present": f.present,
        "threshold": f.threshold,
        "tta": TTAViews(original=f.tta_original, flipped=f.tta_flipped),
        "model_version": r.model_version,
        "seconds": r.seconds,
        "created_at": r.created_at,
    }


def run_result(r: Result) -> RunResult:
    f = r.finding
    scored = {fs.frame_number: fs for fs in r.frames if fs.window_scores is not None}
    keyframes = [
        KeyframeOut(
            frame_number=n,
            opacification=scored[n].opacification,
            probability=scored[n].probability,
            tta=keyframe_tta(scored[n].window_scores, scored[n].window_original, scored[n].window_flipped),
            window_scores=scored[n].window_scores,
            window_original=scored[n].window_original,
            window_flipped=scored[n].window_flipped,
        )
        for n in f.frame_numbers
        if n in scored
    ]
    return RunResult(
        **headline(r),
        model_name=r.model_name,
        device_uid=r.device_uid,
        keyframes=keyframes,
        regions=regions_out(f),
    )


def regions_out(finding) -> list[RegionOut]:
    """Every stored region, each marked whether it is drawn (SR, result image, presentation state)."""
    drawn = set(selected_regions(finding))
    return [RegionOut(**region.to_json(), drawn=region in drawn) for region in finding.regions]


def run_out(instance: Instance) -> RunOut:
    job, r = instance.job, instance.result
    return RunOut(
        instance_id=instance.id,
        sop_instance_uid=instance.sop_instance_uid,
        series_instance_uid=instance.series_instance_uid,
        received_at=instance.received_at,
        frames=len(r.frames) if r is not None else 0,
        job=None if job is None else JobSummary(state=job.state, attempts=job.attempts, last_error=job.last_error),
        result=None if r is None else run_result(r),
    )


def delivery_out(d: Delivery) -> DeliveryOut:
    return DeliveryOut(id=d.id, report_id=d.report_id, object_kind=d.object.kind, sop_instance_uid=d.object.sop_instance_uid,
                       destination=d.destination, state=d.state, attempts=d.attempts, last_status=d.last_status,
                       last_error=d.last_error, sent_at=d.sent_at)


def object_out(o: ResultObject) -> ResultObjectOut:
    base = f"/objects/{o.sop_instance_uid}"
    return ResultObjectOut(kind=o.kind, sop_class_uid=o.sop_class_uid, sop_instance_uid=o.sop_instance_uid,
                           series_instance_uid=o.series_instance_uid, instance_id=o.instance_id,
                           download=f"{base}.dcm", picture=f"{base}.png" if o.kind == ObjectKind.SC.value else None)


def report_out(report: Report, by_id: dict[int, Report]) -> ReportOut:
    predecessor = by_id.get(report.predecessor_id) if report.predecessor_id else None
    base = f"/reports/{report.sop_instance_uid}"
    return ReportOut(
        sop_instance_uid=report.sop_instance_uid,
        series_instance_uid=report.series_instance_uid,
        created_at=report.created_at,
        present=report.present,
        n_instances=report.n_instances,
        predecessor_sop_instance_uid=predecessor.sop_instance_uid if predecessor else None,
        deliveries=[delivery_out(d) for d in sorted(report.deliveries, key=lambda d: d.id)],
        objects=[object_out(o) for o in report.objects],
        derived_pending=report.derived_pending,
        download=f"{base}.dcm",
        text=f"{base}.txt",
    )


def sr_state(study: Study) -> str:
    """Delivery state of the study's newest result, all its objects: none, failed, pending, sent (worst first)."""
    if not study.reports:
        return "none"
    states = {d.state for d in study.reports[-1].deliveries}
    for state in (DeliveryState.FAILED, DeliveryState.PENDING, DeliveryState.SENT):
        if state.value in states:
            return state.value
    return "none" if not states else sorted(states)[0]


def study_finding(study: Study) -> tuple[str, float | None]:
    """The study's finding across its runs, and its highest run probability."""
    results = [i.result for i in study.instances if i.result is not None]
    job_states = {i.job.state for i in study.instances if i.job is not None}
    probability = max((r.probability for r in results), default=None)
    if job_states & {JobState.QUEUED.value, JobState.RUNNING.value}:
        return "analysing", probability
    if results:
        return ("stenosis" if any(r.present for r in results) else "no stenosis"), probability
    if JobState.FAILED.value in job_states:
        return "failed", probability
    return "waiting", probability


def patient_identity(study: Study) -> tuple[str | None, str | None]:
    """Patient name and ID from the first stored header (only called when the setting allows)."""
    for instance in sorted(study.instances, key=lambda i: i.id):
        try:
            ds = pydicom.dcmread(instance.path, stop_before_pixels=True,
                                 specific_tags=["PatientName", "PatientID"])
        except Exception:
            log.warning("header of instance id=%s unreadable", instance.id)
            continue
        return str(ds.get("PatientName", "")), str(ds.get("PatientID", ""))
    return None, None


def study_summary(study: Study, show_identity: bool = False) -> StudySummary:
    finding, probability = study_finding(study)
    name, pid = patient_identity(study) if show_identity else (None, None)
    return StudySummary(
        study_instance_uid=study.study_instance_uid,
        received_at=study.last_received_at,
        runs=len(study.instances),
        analysed=sum(1 for i in study.instances if i.result is not None),
        finding=finding,
        probability=probability,
        sr_state=sr_state(study),
        patient_name=name,
        patient_id=pid,
    )


def study_detail(study: Study, show_identity: bool = False) -> StudyDetail:
    by_id = {r.id: r for r in study.reports}
    return StudyDetail(
        study=study_summary(study, show_identity),
        runs=[run_out(i) for i in sorted(study.instances, key=lambda i: i.id)],
        reports=[report_out(r, by_id) for r in reversed(study.reports)],
        report_error=study.report_error,
    )


def association_out(a: Association) -> AssociationOut:
    return AssociationOut(
        id=a.id, calling_aet=a.calling_aet, called_aet=a.called_aet, peer_address=a.peer_address,
        peer_port=a.peer_port, started_at=a.started_at, ended_at=a.ended_at, outcome=a.outcome,
        reason=a.reason, instances_stored=a.instances_stored, instances_refused=a.instances_refused,
        bytes_received=a.bytes_received, protocol=a.protocol or "dimse",
    )
