"""Small queries shared by several components."""

from __future__ import annotations

from datetime import datetime
from enum import Enum

from sqlalchemy import func, select
from sqlalchemy.orm import InstrumentedAttribute, Session, selectinload

from arcade_pacs.db.tables import Delivery, Instance, Job, ReceiptConflict, Report, Study


def counts_by_state(column: InstrumentedAttribute, states: type[Enum], *, session: Session) -> dict[str, int]:
    """Rows per value of a state ``column``, every member of ``states`` present (zero included)."""
    rows = session.execute(select(column, func.count()).group_by(column)).all()
    counts = {s.value: 0 for s in states}
    counts.update({state: n for state, n in rows})
    return counts


def count_rows(table, *, session: Session, where=None) -> int:
    """Number of rows of a mapped ``table`` (those matching ``where``, when given)."""
    query = select(func.count()).select_from(table)
    return session.scalar(query if where is None else query.where(where))


def newest(table, limit: int, *, session: Session, where=None) -> list:
    """The newest ``limit`` rows of a mapped ``table`` (highest id first), optionally filtered."""
    query = select(table).order_by(table.id.desc()).limit(limit)
    if where is not None:
        query = query.where(where)
    return list(session.scalars(query))


def page(table, limit: int, offset: int, *, session: Session, order_by=None, where=None) -> list:
    """One page of a mapped ``table``, newest first (``order_by`` then id, descending)."""
    order = [table.id.desc()] if order_by is None else [order_by.desc(), table.id.desc()]
    query = select(table).order_by(*order).limit(limit).offset(offset)
    if where is not None:
        query = query.where(where)
    return list(session.scalars(query))


def studies_page(limit: int, offset: int, *, session: Session) -> list:
    """Studies, the most recently received first, with their instances, results and reports loaded."""
    query = (
        select(Study)
        .order_by(Study.last_received_at.desc(), Study.id.desc())
        .limit(limit)
        .offset(offset)
        .options(
            selectinload(Study.instances).selectinload(Instance.job),
            selectinload(Study.instances).selectinload(Instance.result),
            selectinload(Study.reports).selectinload(Report.deliveries),
        )
    )
    return list(session.scalars(query))


def study_by_uid(study_uid: str, *, session: Session):
    """The study with this Study Instance UID, or ``None``."""
    return session.scalar(select(Study).where(Study.study_instance_uid == study_uid))


def deliveries_by_destination(*, session: Session) -> dict[str, dict[str, int]]:
    """Deliveries per destination and state: the backlog each PACS has with this plugin."""
    rows = session.execute(
        select(Delivery.destination, Delivery.state, func.count()).group_by(Delivery.destination, Delivery.state)
    ).all()
    counts: dict[str, dict[str, int]] = {}
    for destination, state, n in rows:
        counts.setdefault(destination, {})[state] = n
    return counts


def recent_errors(limit: int, *, session: Session) -> list[tuple[str, int, object, str]]:
    """The last errors of jobs, deliveries, SR writing and instances refused for whose they are
    (:class:`~arcade_pacs.db.tables.ReceiptConflict`): ``(source, id, when, error)``, newest first.

    ``when`` is when the job finished or the SR is next due; a delivery has no time of its
    last attempt, so it gives when its next one is due.
    """
    found = []
    for job in session.scalars(
        select(Job).where(Job.last_error.is_not(None)).order_by(Job.id.desc()).limit(limit)
    ):
        found.append(("job", job.id, job.finished_at or job.available_at, job.last_error))
    for d in session.scalars(
        select(Delivery).where(Delivery.last_error.is_not(None)).order_by(Delivery.id.desc()).limit(limit)
    ):
        found.append(("delivery", d.id, d.next_attempt_at, d.last_error))
    for study in session.scalars(
        select(Study).where(Study.report_error.is_not(None)).order_by(Study.id.desc()).limit(limit)
    ):
        found.append(("report", study.id, study.report_due_at, study.report_error))
    for conflict in session.scalars(select(ReceiptConflict).order_by(ReceiptConflict.id.desc()).limit(limit)):
        found.append(("refused instance", conflict.id, conflict.at,
                      f"{conflict.sop_instance_uid} from {conflict.calling_aet}: {conflict.reason}"))
    found.sort(key=lambda e: e[2] or datetime.min, reverse=True)
    return found[:limit]


def receipt_conflicts(*, session: Session) -> dict[str, int]:
    """Instances refused because of whose they are, by kind: ``patient`` (another patient than
    their study's) and ``study`` (a SOP Instance UID already held in another study)."""
    counts = {"patient": 0, "study": 0}
    counts.update(dict(session.execute(
        select(ReceiptConflict.kind, func.count()).group_by(ReceiptConflict.kind)).all()))
    return counts
