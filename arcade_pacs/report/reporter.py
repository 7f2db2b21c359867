"""Writing a study's SR once the study is quiet, and queueing its deliveries.

A study is ready when it needs a report, no instance of it arrived for ``study_quiet_seconds``
and none of its jobs is still queued or running. The SR covers every instance with a result;
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
from sqlalchemy import exists, select, update
from sqlalchemy.orm import Session

from arcade_pacs import metrics
from arcade_pacs.db.tables import Delivery, Instance, Job, Report, Study, utcnow
from arcade_pacs.jobs import JobState
from arcade_pacs.report.sr import InstanceResult, ModelIdentity, build_sr
from arcade_pacs.send.outbox import DeliveryState, supersede_pending
from arcade_pacs.settings import Settings
from arcade_pacs.storage import atomic_write, safe_uid

log = logging.getLogger(__name__)


def ready_studies(quiet_seconds: float, *, session: Session) -> list[Study]:
    """Studies that need a report, are quiet, and have no job still to run."""
    busy = exists().where(
        Job.instance_id == Instance.id,
        Instance.study_id == Study.id,
        Job.state.in_([JobState.QUEUED.value, JobState.RUNNING.value]),
    )
    cutoff = utcnow() - timedelta(seconds=quiet_seconds)
    return list(
        session.scalars(
            select(Study)
            .where(Study.needs_report, Study.last_received_at <= cutoff, ~busy)
            .order_by(Study.last_received_at)
        )
    )


def _instance_results(study: Study) -> list[InstanceResult]:
    results = []
    for instance in sorted(study.instances, key=lambda i: i.id):
        r = instance.result
        if r is None:
            continue
        header = pydicom.dcmread(instance.path, stop_before_pixels=True)
        results.append(
            InstanceResult(
                source=header,
                probability=r.probability,
                present=r.present,
                threshold=r.threshold,
                keyframes=list(r.keyframes),
                regions=list(r.regions),
                tta_original=r.tta_original,
                tta_flipped=r.tta_flipped,
                model=ModelIdentity(r.model_name, r.model_version, r.device_uid),
            )
        )
    return results


def _reported(study_id: int, seen_received, *, session: Session) -> None:
    """Clear the study's flag, unless an instance arrived meanwhile (then the next pass reports again)."""
    session.execute(
        update(Study)
        .where(Study.id == study_id, Study.last_received_at == seen_received)
        .values(needs_report=False)
    )


def sr_path(root: Path, study_uid: str, sop_uid: str) -> Path:
    """Where a produced SR is kept: ``root/reports/<study>/<sop>.dcm``."""
    return Path(root) / "reports" / safe_uid(study_uid) / f"{safe_uid(sop_uid)}.dcm"


def write_report(study: Study, settings: Settings, *, session: Session) -> Report | None:
    """Build, store and queue the SR of ``study``; ``None`` when no instance has a result."""
    seen_received = study.last_received_at
    results = _instance_results(study)
    if not results:
        log.warning("study id=%s has no analysed instance; no SR written", study.id)
        _reported(study.id, seen_received, session=session)
        session.commit()
        return None
    previous = study.reports[-1] if study.reports else None
    series_uid = previous.series_instance_uid if previous else generate_uid()
    sop_uid = generate_uid()
    predecessor = pydicom.dcmread(previous.path, stop_before_pixels=True) if previous else None
    newest = results[-1].model
    sr = build_sr(
        results,
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
        present=any(r.present for r in results),
        n_instances=len(results),
    )
    session.add(report)
    if previous is not None:
        supersede_pending(previous.id, session=session)
    for dest in settings.destinations:
        session.add(
            Delivery(
                report=report,
                destination=dest.name,
                ae_title=dest.ae_title,
                host=dest.host,
                port=dest.port,
                state=DeliveryState.PENDING.value,
            )
        )
    _reported(study.id, seen_received, session=session)
    session.commit()
    metrics.REPORTS.inc()
    log.info("report id=%s written for study id=%s (%d instances)", report.id, study.id, len(results))
    return report


def report_ready_studies(settings: Settings, *, session: Session) -> int:
    """Write the SR of every ready study; returns how many were written."""
    written = 0
    for study in ready_studies(settings.pipeline.study_quiet_seconds, session=session):
        try:
            written += write_report(study, settings, session=session) is not None
        except Exception:
            session.rollback()
            log.exception("writing the SR of study id=%s failed; will retry", study.id)
    return written
