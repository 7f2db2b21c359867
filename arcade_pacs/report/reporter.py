"""Writing a study's SR once the study is quiet, and queueing its deliveries.

A study is ready when it needs a report, no instance of it arrived for ``study_quiet_seconds``,
none of its jobs is still queued or running, and an earlier failed attempt to write its SR is
not still backing off (``report_due_at``). The SR covers every instance with a result and
every instance whose analysis ended ``failed`` (with the job's reason, so no run is left out
silently); source headers pass :func:`~arcade_pacs.report.headers.sanitize_header` first, so an
invalid patient attribute never holds a result back;
a later SR of the same study keeps the series, takes the next instance number and names the
earlier one in the Predecessor Documents Sequence, and pending deliveries of the earlier one
are superseded, so there is never more than one live SR for a study's content.
"""

from __future__ import annotations

import io
import logging
from datetime import timedelta
from pathlib import Path

import pydicom
from pydicom.uid import generate_uid
from sqlalchemy import exists, or_, select, update
from sqlalchemy.orm import Session

from arcade_pacs import metrics
from arcade_pacs.db.tables import Instance, Job, Report, Study, utcnow
from arcade_pacs.jobs import JobState
from arcade_pacs.model.classifier import ModelInfo
from arcade_pacs.report.headers import sanitize_header
from arcade_pacs.report.sr import FailedRun, InstanceResult, ModelIdentity, build_sr
from arcade_pacs.send import outbox
from arcade_pacs.settings import Settings
from arcade_pacs.storage import atomic_write, safe_uid

log = logging.getLogger(__name__)

REPORT_BACKOFF_BASE_S = 5.0
REPORT_BACKOFF_CAP_S = 300.0


def ready_studies(quiet_seconds: float, *, session: Session) -> list[Study]:
    """Studies that need a report, are quiet, and have no job still to run."""
    busy = exists().where(
        Job.instance_id == Instance.id,
        Instance.study_id == Study.id,
        Job.state.in_([JobState.QUEUED.value, JobState.RUNNING.value]),
    )
    now = utcnow()
    cutoff = now - timedelta(seconds=quiet_seconds)
    due = or_(Study.report_due_at.is_(None), Study.report_due_at <= now)
    return list(
        session.scalars(
            select(Study)
            .where(Study.needs_report, Study.last_received_at <= cutoff, ~busy, due)
            .order_by(Study.last_received_at)
        )
    )


def _header(instance: Instance):
    """The stored instance's header, made fit for the SR (:func:`sanitize_header`)."""
    return sanitize_header(pydicom.dcmread(instance.path, stop_before_pixels=True))


def _instance_results(study: Study) -> list[InstanceResult]:
    results = []
    for instance in sorted(study.instances, key=lambda i: i.id):
        r = instance.result
        if r is None:
            continue
        model = ModelIdentity(r.model_name, r.model_version, r.device_uid)
        results.append(InstanceResult(source=_header(instance), finding=r.finding, model=model))
    return results


def _failed_runs(study: Study) -> list[FailedRun]:
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
        failed.append(FailedRun(source=header, reason=job.last_error or "analysis failed"))
    return failed


def _serving_model(settings: Settings) -> ModelIdentity:
    """The configured model: named in the SR of a study none of whose runs could be analysed."""
    info = ModelInfo.read(settings.model.path)
    return ModelIdentity(info.name, info.version, info.device_uid)


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
    """Remember a failed attempt (count, reason, next try); returns the number of attempts."""
    study = session.get(Study, study_id)
    study.report_attempts += 1
    study.report_error = f"{type(error).__name__}: {error}"[:2000]
    study.report_due_at = utcnow() + timedelta(seconds=report_backoff_s(study.report_attempts))
    session.commit()
    return study.report_attempts


def sr_path(root: Path, study_uid: str, sop_uid: str) -> Path:
    """Where a produced SR is kept: ``root/reports/<study>/<sop>.dcm``."""
    return Path(root) / "reports" / safe_uid(study_uid) / f"{safe_uid(sop_uid)}.dcm"


def write_report(study: Study, settings: Settings, *, session: Session) -> Report | None:
    """Build, store and queue the SR of ``study``: its results and the runs that could not be analysed.

    ``None`` when the study has neither (nothing analysable was received).
    """
    seen_received = study.last_received_at
    results = _instance_results(study)
    failed = _failed_runs(study)
    if not results and not failed:
        log.warning("study id=%s has no analysed or failed instance; no SR written", study.id)
        _reported(study.id, seen_received, session=session)
        session.commit()
        return None
    previous = study.reports[-1] if study.reports else None
    series_uid = previous.series_instance_uid if previous else generate_uid()
    sop_uid = generate_uid()
    predecessor = pydicom.dcmread(previous.path, stop_before_pixels=True) if previous else None
    newest = results[-1].model if results else _serving_model(settings)
    sr = build_sr(
        results,
        failed=failed,
        model=newest,
        series_instance_uid=series_uid,
        sop_instance_uid=sop_uid,
        instance_number=len(study.reports) + 1,
        predecessor=predecessor,
    )
    buffer = io.BytesIO()
    sr.save_as(buffer, enforce_file_format=True)
    path = sr_path(settings.storage.root, study.study_instance_uid, sop_uid)
    atomic_write(path, buffer.getvalue())

    report = Report(
        study=study,
        sop_instance_uid=sop_uid,
        series_instance_uid=series_uid,
        predecessor_id=previous.id if previous else None,
        path=str(path),
        present=any(r.finding.present for r in results),
        n_instances=len(results) + len(failed),
    )
    session.add(report)
    if previous is not None:
        outbox.supersede_pending(previous.id, session=session)
    outbox.enqueue(report, settings.destinations, session=session)
    _reported(study.id, seen_received, session=session)
    session.commit()
    metrics.REPORTS.inc()
    log.info("report id=%s written for study id=%s (%d analysed, %d not analysed)",
             report.id, study.id, len(results), len(failed))
    return report


def report_ready_studies(settings: Settings, *, session: Session) -> int:
    """Write the SR of every ready study; returns how many were written."""
    written = 0
    for study in ready_studies(settings.pipeline.study_quiet_seconds, session=session):
        study_id = study.id
        try:
            written += write_report(study, settings, session=session) is not None
        except Exception as exc:
            session.rollback()
            attempts = _report_failed(study_id, exc, session=session)
            log.warning(
                "writing the SR of study id=%s failed (attempt %d, next in %.0f s): %s",
                study_id, attempts, report_backoff_s(attempts), type(exc).__name__,
            )
            log.debug("SR failure of study id=%s", study_id, exc_info=True)
    return written
