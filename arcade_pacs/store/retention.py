"""Retention: the pixel data of instances whose study's SR was delivered, after ``storage.keep_days``.

The plugin is not the archive: the PACS that sent an instance keeps it. Once the study's
newest SR covers the instance and every delivery of that SR succeeded, the received file is
only needed to redraw the admin's keyframe pictures. After ``keep_days`` its pixel data is
deleted; the header (a few KB) is kept under the same path, because a later SR of the study
(more instances arriving) must still reference it and copy its patient/study attributes.
The instance row, its result and scores stay. A resend of the instance brings the pixels back.

:func:`purge_delivered` is one bounded pass, run from the dispatcher loop.
"""

from __future__ import annotations

import io
import logging
from datetime import datetime, timedelta

import pydicom
from sqlalchemy import select
from sqlalchemy.orm import Session

from arcade_pacs.db.tables import Instance, Job, Report, Study, utcnow
from arcade_pacs.store.files import atomic_write

log = logging.getLogger(__name__)

DELIVERED = frozenset({"sent", "cancelled"})
"""Delivery states after which nothing more will be sent (``cancelled``: destination removed)."""
BUSY_JOB_STATES = ("queued", "running")


def delivered(report: Report) -> bool:
    """Every delivery of ``report`` is done (none pending or failed); true with no destination."""
    return all(d.state in DELIVERED for d in report.deliveries)


def header_only(path: str) -> bytes:
    """The Part 10 file at ``path`` without its pixel data (everything before (7FE0,0010))."""
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def purge_candidates(keep_days: float, *, session: Session, now: datetime | None = None, limit: int = 200) -> list[Instance]:
    """Instances whose pixel data may be deleted now (oldest first, at most ``limit``)."""
    now = now or utcnow()
    cutoff = now - timedelta(days=keep_days)
    rows = session.scalars(
        select(Instance)
        .join(Study, Instance.study_id == Study.id)
        .outerjoin(Job, Job.instance_id == Instance.id)
        .where(
            Instance.purged_at.is_(None),
            Instance.received_at < cutoff,
            Study.needs_report.is_(False),
            (Job.id.is_(None)) | Job.state.not_in(BUSY_JOB_STATES),
        )
        .order_by(Instance.received_at, Instance.id)
        .limit(limit)
    )
    chosen = []
    for instance in rows:
        reports = instance.study.reports
        newest = reports[-1] if reports else None
        if newest is not None and newest.created_at >= instance.received_at and delivered(newest):
            chosen.append(instance)
    return chosen


def purge_delivered(keep_days: float, *, session: Session, now: datetime | None = None, limit: int = 200) -> int:
    """Delete the pixel data of :func:`purge_candidates`; returns how many instances were purged.

    ``keep_days`` <= 0 turns retention off. A file that cannot be rewritten is left as it is
    (logged by instance id) and tried again on the next pass.
    """
    if keep_days <= 0:
        return 0
    now = now or utcnow()
    purged = 0
    for instance in purge_candidates(keep_days, session=session, now=now, limit=limit):
        try:
            atomic_write(instance.path, header_only(instance.path))
        except FileNotFoundError:
            pass  # already gone: nothing left to delete
        except Exception as exc:
            log.warning("retention: instance id=%s not purged: %s", instance.id, type(exc).__name__)
            continue
        instance.purged_at = now
        session.commit()
        purged += 1
    if purged:
        log.info("retention: pixel data of %d instances deleted (older than %g days, SR delivered)", purged, keep_days)
    return purged
