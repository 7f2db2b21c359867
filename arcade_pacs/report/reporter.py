"""Writing a study's result once the study is quiet, and queueing its deliveries.

A study's result (one :class:`~arcade_pacs.db.tables.Report`, a version) is its SR, a result
image per run and a presentation state per analysed run (:mod:`arcade_pacs.report.objects`),
each a :class:`~arcade_pacs.db.tables.ResultObject` the outbox sends to the destinations that
want its kind; a newer version replaces them all together. The SR is committed and queued
first, the derived objects in a second transaction: drawing them (about half a second per run)
never delays the result a PACS reads, and a crash between the two leaves the report
``derived_pending``, which makes its study ready again until they are made.

A study is ready when it needs a report, no instance of it arrived for ``study_quiet_seconds``
and none of its jobs is still queued or running, or when its last report's derived objects are
still to be made; in both cases only once an earlier failed attempt is not still backing off
(``report_due_at``). The SR covers every instance with a result and
every instance whose analysis ended ``failed`` (with the job's reason, so no run is left out
silently); source headers pass :func:`~arcade_pacs.report.headers.sanitize_header` first, so an
invalid patient attribute never holds a result back;
a later SR of the same study keeps the series, takes the next instance number and names the
earlier one in the Predecessor Documents Sequence, and pending deliveries of the earlier one
are superseded, so there is never more than one live SR for a study's content.

Reporters in any number of processes share the work: each claims one ready study at a time
with a lease (:mod:`arcade_pacs.db.claims`) and commits the SR only while it still holds the
claim. An SR is written only when what it would say differs from the last one (its
``content_key``: each run's SOP Instance UID, stored-file digest, outcome and model), so a study
is never reported twice for the same content, whatever crashed or raced.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pydicom
from pydicom.uid import generate_uid
from sqlalchemy import and_, exists, or_, select, update
from sqlalchemy.orm import Session

from arcade_pacs.core import faults, metrics
from arcade_pacs.core.phi import describe
from arcade_pacs.db import claims
from arcade_pacs.db.tables import Instance, Job, Report, ResultObject, Study, utcnow
from arcade_pacs.dicom.identity import PatientKey
from arcade_pacs.jobs import JobState
from arcade_pacs.model.classifier import ModelInfo
from arcade_pacs.report.headers import sanitize_header
from arcade_pacs.report.objects import Built, Numbering, build_objects
from arcade_pacs.report.sr import FailedRun, InstanceResult, ModelIdentity, build_sr
from arcade_pacs.send import outbox
from arcade_pacs.settings import ObjectKind, Settings
from arcade_pacs.store.files import atomic_write, safe_uid

log = logging.getLogger(__name__)

REPORT_BACKOFF_BASE_S = 5.0
REPORT_BACKOFF_CAP_S = 300.0


def _ready(quiet_seconds: float):
    """The condition of a study ready to report: see the module docstring."""
    busy = exists().where(
        Job.instance_id == Instance.id,
        Instance.study_id == Study.id,
        Job.state.in_([JobState.QUEUED.value, JobState.RUNNING.value]),
    )
    now = utcnow()
    cutoff = now - timedelta(seconds=quiet_seconds)
    due = or_(Study.report_due_at.is_(None), Study.report_due_at <= now)
    derived_pending = exists().where(Report.study_id == Study.id, Report.derived_pending)
    return and_(or_(and_(Study.needs_report, Study.last_received_at <= cutoff, ~busy), derived_pending), due)


def ready_studies(quiet_seconds: float, *, session: Session) -> list[Study]:
    """Studies that need a report, are quiet, and have no job still to run."""
    return list(session.scalars(select(Study).where(_ready(quiet_seconds)).order_by(Study.last_received_at)))


def claim_study(owner: str, quiet_seconds: float, lease_s: float, *, session: Session) -> Study | None:
    """Take one ready study nobody else is reporting, with a lease; ``None`` when there is none."""
    now = utcnow()
    unclaimed = or_(Study.lease_until.is_(None), Study.lease_until < now)
    taken = claims.claim_rows(
        Study, and_(_ready(quiet_seconds), unclaimed), [Study.last_received_at, Study.id],
        {"lease_owner": owner, "lease_until": claims.lease_until(lease_s, now)},
        session=session,
    )
    return session.get(Study, taken[0], populate_existing=True) if taken else None


def content_key(study: Study) -> str:
    """Digest of what the study's result would say: each finished run's UID, file digest, outcome and
    the model behind its result (a re-analysis by another model is new content, by the same one not)."""
    parts = sorted(
        f"{i.sop_instance_uid}:{i.digest or ''}:{i.generation}:{i.job.state if i.job else ''}"
        f":{i.result.device_uid if i.result else ''}"
        for i in study.instances
        if i.job is not None and i.job.state in (JobState.DONE.value, JobState.FAILED.value)
    )
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _header(instance: Instance):
    """The stored instance's header, made fit for the SR (:func:`sanitize_header`)."""
    return sanitize_header(pydicom.dcmread(instance.path, stop_before_pixels=True))


class _Patient:
    """The study's patient (:class:`~arcade_pacs.dicom.identity.PatientKey`): the key kept on the study,
    else (a study received before keys were kept) that of its first instance read. An instance
    of another patient (only in such an old study: receipt refuses them) is left out of the SR."""

    def __init__(self, study: Study):
        self.study = study
        self.key = PatientKey(study.patient_key, study.patient_issuer_key) if study.patient_key else None

    def owns(self, instance: Instance, header) -> bool:
        key = PatientKey.of(header)
        if self.key is None:
            self.key = key
        if self.key.matches(key):
            self.key = self.key.refined(key)
            return True
        log.warning("instance id=%s belongs to another patient than study id=%s: not in its SR",
                    instance.id, self.study.id)
        return False


def _instance_results(study: Study, patient: _Patient) -> list[InstanceResult]:
    results = []
    for instance in sorted(study.instances, key=lambda i: i.id):
        r = instance.result
        if r is None:
            continue
        header = _header(instance)
        if not patient.owns(instance, header):
            continue
        model = ModelIdentity(r.model_name, r.model_version, r.device_uid)
        scores = {f.frame_number: list(f.window_scores) for f in r.frames if f.window_scores is not None}
        results.append(InstanceResult(source=header, finding=r.finding, model=model,
                                      window_scores=scores, path=instance.path, instance_id=instance.id))
    return results


def _failed_runs(study: Study, patient: _Patient) -> list[FailedRun]:
    """Instances whose analysis ended ``failed`` (and that have no earlier result), with the reason.

    A run whose stored header cannot be read any more cannot be referenced in an SR; it is
    logged and stays visible, with its reason, in the admin API (``/jobs``).
    """
    failed = []
    for instance in sorted(study.instances, key=lambda i: i.id):
        job = instance.job
        if instance.result is not None or job is None or job.state != JobState.FAILED.value:
            continue
        try:
            header = _header(instance)
        except Exception as exc:
            log.warning("instance id=%s failed and its header is unreadable (%s); not in the SR",
                        instance.id, type(exc).__name__)
            continue
        if patient.owns(instance, header):
            failed.append(FailedRun(source=header, reason=job.last_error or "analysis failed", instance_id=instance.id))
    return failed


def _serving_model(settings: Settings, serving: Callable[[], ModelInfo] | None) -> ModelIdentity:
    """The model that serves (``serving``: the process's own, whose identity follows the form that
    computes the scores, e.g. the int8 model), else the configured file's sidecar: named in the SR
    of a study none of whose runs could be analysed."""
    info = serving() if serving is not None else ModelInfo.read(settings.model.path)
    return ModelIdentity(info.name, info.version, info.device_uid)


def _release(study_id: int, owner: str | None, *, session: Session) -> bool:
    """Give up ``owner``'s claim on the study (not committed); False when it was no longer theirs."""
    where = [Study.id == study_id]
    if owner is not None:
        where.append(Study.lease_owner == owner)
    return bool(session.execute(update(Study).where(*where).values(lease_owner=None, lease_until=None)).rowcount)


def _reported(study_id: int, seen_received, *, session: Session) -> None:
    """Clear the study's flag, unless an instance arrived meanwhile (then the next pass reports again)."""
    session.execute(
        update(Study)
        .where(Study.id == study_id, Study.last_received_at == seen_received)
        .values(needs_report=False, report_attempts=0, report_error=None, report_due_at=None)
    )


def report_backoff_s(attempts: int) -> float:
    """Seconds before writing a study's SR is tried again after ``attempts`` failures in a row."""
    return min(REPORT_BACKOFF_CAP_S, REPORT_BACKOFF_BASE_S * 2 ** max(0, attempts - 1))


def _report_failed(study_id: int, error: BaseException, *, session: Session) -> int:
    """Remember a failed attempt (count, reason, next try) and release the claim; returns the attempts."""
    study = session.get(Study, study_id, populate_existing=True)
    study.report_attempts += 1
    study.report_error = describe(error)[:2000]  # shown by the open /status: no data values
    study.report_due_at = utcnow() + timedelta(seconds=report_backoff_s(study.report_attempts))
    study.lease_owner = study.lease_until = None
    session.commit()
    return study.report_attempts


def sr_path(root: Path, study_uid: str, sop_uid: str) -> Path:
    """Where a produced object (SR, result image, presentation state) is kept: ``root/reports/<study>/<sop>.dcm``."""
    return Path(root) / "reports" / safe_uid(study_uid) / f"{safe_uid(sop_uid)}.dcm"


def _numbering(study: Study, kind: ObjectKind) -> Numbering:
    """The series of ``kind`` the study's earlier versions used (or a new one), and the next instance number."""
    earlier = [o for r in study.reports for o in r.objects if o.kind == kind.value]
    series = earlier[-1].series_instance_uid if earlier else generate_uid()
    return Numbering(series, len(earlier) + 1)


def _encoded(dataset) -> bytes:
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def write_report(study: Study, settings: Settings, *, session: Session, owner: str | None = None,
                 on_sr: Callable[[], None] | None = None, on_derived: Callable[[], None] | None = None,
                 serving: Callable[[], ModelInfo] | None = None) -> Report | None:
    """Build, store and queue the result of ``study``: its SR (results and the runs that could not
    be analysed) first, then a result image per run and a presentation state per analysed run.

    The SR is committed and queued on its own (``on_sr`` is called then: the senders start on it)
    and the derived objects follow in a second transaction (:func:`_write_derived`), so drawing
    them never delays the result a PACS reads; the report is ``derived_pending`` in between, and
    a crash there leaves a study that the next claim completes (``on_derived`` is called as they
    are committed and queued, by this claim or that one). ``owner`` is the reporter's claim
    (see :func:`claim_study`): each transaction commits only while it still holds it. ``None``
    when no new SR was written: the study has neither results nor failed runs (nothing analysable
    was received), its content is what the last SR says, or only the last SR's derived objects
    were still to be made. ``serving`` gives the identity of the model that serves (named when
    no run was analysed); without it, the configured file's sidecar.
    """
    seen_received = study.last_received_at
    key = content_key(study)
    previous = study.reports[-1] if study.reports else None
    patient = _Patient(study)
    results = _instance_results(study, patient)
    failed = _failed_runs(study, patient)
    if previous is not None and previous.content_key == key and previous.derived_pending:
        _write_derived(previous, study, results, failed, settings, session=session, owner=owner,
                       on_derived=on_derived, serving=serving)
        return None
    if (not results and not failed) or (previous is not None and previous.content_key == key):
        reason = "has no analysed or failed instance" if not (results or failed) else "is unchanged since its last SR"
        if _release(study.id, owner, session=session):
            _reported(study.id, seen_received, session=session)
            log.info("study id=%s %s; no SR written", study.id, reason)
        session.commit()
        return None
    series_uid = previous.series_instance_uid if previous else generate_uid()
    sop_uid = generate_uid()
    predecessor = pydicom.dcmread(previous.path, stop_before_pixels=True) if previous else None
    sr = build_sr(
        results,
        failed=failed,
        model=_study_model(results, settings, serving),
        series_instance_uid=series_uid,
        sop_instance_uid=sop_uid,
        instance_number=len(study.reports) + 1,
        predecessor=predecessor,
    )
    path = sr_path(settings.storage.root, study.study_instance_uid, sop_uid)
    atomic_write(path, _encoded(sr))  # durable before any row names it
    faults.point("sr_written", study.study_instance_uid)

    if not _renew(study.id, owner, settings.pipeline.lease_s, session=session):
        session.rollback()
        path.unlink(missing_ok=True)  # never committed, never sent
        log.warning("study id=%s: claim lost while writing its SR; another reporter writes it", study.id)
        return None
    report = Report(
        study=study,
        sop_instance_uid=sop_uid,
        series_instance_uid=series_uid,
        predecessor_id=previous.id if previous else None,
        path=str(path),
        present=any(r.finding.present for r in results),
        n_instances=len(results) + len(failed),
        content_key=key,
        derived_pending=True,
    )
    sr_object = _object(report, Built(ObjectKind.SR, sr, None), path)
    session.add_all([report, sr_object])
    if previous is not None:
        previous.derived_pending = False  # replaced before its images were made: this version makes its own
        outbox.supersede_pending(previous.id, session=session)
    outbox.enqueue(report, settings.destinations, session=session, objects=[sr_object])
    _reported(study.id, seen_received, session=session)
    session.commit()
    metrics.REPORTS.inc()
    log.info("report id=%s written for study id=%s (%d analysed, %d not analysed); SR queued",
             report.id, study.id, len(results), len(failed))
    if on_sr is not None:
        on_sr()
    faults.point("sr_committed", study.study_instance_uid)
    _write_derived(report, study, results, failed, settings, session=session, owner=owner,
                   on_derived=on_derived, serving=serving)
    return report


def _study_model(results: list[InstanceResult], settings: Settings,
                 serving: Callable[[], ModelInfo] | None) -> ModelIdentity:
    """The model the study's objects name: that of its newest result, else the serving one."""
    return results[-1].model if results else _serving_model(settings, serving)


def _object(report: Report, item: Built, path: Path) -> ResultObject:
    """The row of one written object of ``report`` (added to the session with the report)."""
    return ResultObject(
        report=report, kind=item.kind.value, sop_class_uid=str(item.dataset.SOPClassUID),
        sop_instance_uid=str(item.dataset.SOPInstanceUID), series_instance_uid=str(item.dataset.SeriesInstanceUID),
        instance_id=item.instance_id, path=str(path),
    )


def _renew(study_id: int, owner: str | None, lease_s: float, *, session: Session) -> bool:
    """Extend ``owner``'s claim on the study (not committed); False when it was no longer theirs."""
    if owner is None:
        return True
    return bool(session.execute(
        update(Study).where(Study.id == study_id, Study.lease_owner == owner)
        .values(lease_until=claims.lease_until(lease_s))
    ).rowcount)


def _write_derived(report: Report, study: Study, results: list[InstanceResult], failed: list[FailedRun],
                   settings: Settings, *, session: Session, owner: str | None,
                   on_derived: Callable[[], None] | None = None,
                   serving: Callable[[], ModelInfo] | None = None) -> None:
    """The second transaction of a report: its result images and presentation states, queued.

    Made from the same runs as its SR (the content key is unchanged), numbered after the
    study's earlier versions; the claim is released with the commit, as the report is complete.
    """
    version = sum(1 for r in study.reports if r.id <= report.id)
    derived = build_objects(results, failed, model=_study_model(results, settings, serving),
                            images=_numbering(study, ObjectKind.SC), states=_numbering(study, ObjectKind.GSPS),
                            version=version)
    paths = []
    for item in derived:  # every file durable before any row names it
        path = sr_path(settings.storage.root, study.study_instance_uid, item.dataset.SOPInstanceUID)
        atomic_write(path, _encoded(item.dataset))
        paths.append(path)
    if not _release(study.id, owner, session=session):
        session.rollback()
        for path in paths:
            path.unlink(missing_ok=True)
        log.warning("study id=%s: claim lost while drawing its result images; another reporter draws them", study.id)
        return
    objects = [_object(report, item, path) for item, path in zip(derived, paths, strict=True)]
    session.add_all(objects)
    report.derived_pending = False
    outbox.enqueue(report, settings.destinations, session=session, objects=objects)
    session.execute(update(Study).where(Study.id == study.id)
                    .values(report_attempts=0, report_error=None, report_due_at=None))
    session.commit()
    log.info("report id=%s: %d result images and presentation states queued", report.id, len(objects))
    if on_derived is not None:
        on_derived()


def report_ready_studies(settings: Settings, *, session: Session, owner: str = "reporter",
                         on_sr: Callable[[], None] | None = None, on_derived: Callable[[], None] | None = None,
                         serving: Callable[[], ModelInfo] | None = None) -> int:
    """Claim and report ready studies one at a time until none is left; returns how many SRs were written
    (``on_sr`` is called as each is committed, before its derived objects are drawn; ``on_derived``
    as derived objects are queued, also those of an earlier SR whose drawing a crash or a full
    disk interrupted; ``serving`` gives the served model's identity, named by a study with no
    analysed run)."""
    written = 0

    def committed() -> None:  # counted here: drawing the derived objects may still fail after it
        nonlocal written
        written += 1
        if on_sr is not None:
            on_sr()

    quiet_s, lease_s = settings.pipeline.study_quiet_seconds, settings.pipeline.lease_s
    while (study := claim_study(owner, quiet_s, lease_s, session=session)) is not None:
        study_id = study.id
        try:
            write_report(study, settings, session=session, owner=owner, on_sr=committed, on_derived=on_derived,
                         serving=serving)
        except Exception as exc:
            session.rollback()
            attempts = _report_failed(study_id, exc, session=session)
            log.warning(
                "writing the SR or result images of study id=%s failed (attempt %d, next in %.0f s): %s",
                study_id, attempts, report_backoff_s(attempts), type(exc).__name__,
            )
            log.debug("SR failure of study id=%s", study_id, exc_info=True)
    return written
