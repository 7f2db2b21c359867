"""The outbox: every SR delivery is a row, so nothing is dropped silently.

::

    pending --sent--> sent
       |  \\--failure, attempts left--> pending (next_attempt_at = now + backoff)
       |   \\--failure, attempts used--> failed   (shown by the admin; POST retry -> pending)
       \\--a newer SR of the study replaced it--> superseded
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import timedelta
from enum import StrEnum

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from arcade_pacs import metrics
from arcade_pacs.db import queries
from arcade_pacs.db.tables import Delivery, Report, utcnow
from arcade_pacs.settings import Destination

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
BACKOFF_BASE_S = 10.0


class DeliveryState(StrEnum):
    """Every state of a delivery."""

    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"
    SUPERSEDED = "superseded"


def enqueue(report: Report, destinations: Iterable[Destination], *, session: Session) -> list[Delivery]:
    """Queue one delivery of ``report`` to each destination (sent by :func:`send_due`)."""
    rows = [
        Delivery(
            report=report,
            destination=dest.name,
            ae_title=dest.ae_title,
            host=dest.host,
            port=dest.port,
            state=DeliveryState.PENDING.value,
        )
        for dest in destinations
    ]
    session.add_all(rows)
    return rows


def due(*, session: Session, limit: int = 20) -> list[Delivery]:
    """Pending deliveries whose next attempt is due, oldest first."""
    return list(
        session.scalars(
            select(Delivery)
            .where(Delivery.state == DeliveryState.PENDING.value, Delivery.next_attempt_at <= utcnow())
            .order_by(Delivery.next_attempt_at, Delivery.id)
            .limit(limit)
        )
    )


def record_outcome(delivery: Delivery, status: int | None, error: str | None, ok: bool) -> None:
    """Record one attempt: sent, or back to pending with back-off, or failed when attempts are used."""
    delivery.attempts += 1
    delivery.last_status = status
    delivery.last_error = error
    if ok:
        delivery.state = DeliveryState.SENT.value
        delivery.sent_at = utcnow()
    elif delivery.attempts >= MAX_ATTEMPTS:
        delivery.state = DeliveryState.FAILED.value
    else:
        delivery.next_attempt_at = utcnow() + timedelta(seconds=BACKOFF_BASE_S * 2 ** (delivery.attempts - 1))


def retry(delivery_id: int, *, session: Session) -> bool:
    """Put a failed delivery back in the outbox (admin action); False when it is not failed."""
    return bool(
        session.execute(
            update(Delivery)
            .where(Delivery.id == delivery_id, Delivery.state == DeliveryState.FAILED.value)
            .values(state=DeliveryState.PENDING.value, attempts=0, next_attempt_at=utcnow())
        ).rowcount
    )


def supersede_pending(report_id: int, *, session: Session) -> None:
    """A newer SR replaces report ``report_id``: its unsent deliveries will not be sent."""
    session.execute(
        update(Delivery)
        .where(
            Delivery.report_id == report_id,
            Delivery.state.in_([DeliveryState.PENDING.value, DeliveryState.FAILED.value]),
        )
        .values(state=DeliveryState.SUPERSEDED.value)
    )


def counts_by_state(*, session: Session) -> dict[str, int]:
    """Number of deliveries in each state (every state present, zero included)."""
    return queries.counts_by_state(Delivery.state, DeliveryState, session=session)


def send_due(scu, *, session: Session) -> int:
    """Attempt every due delivery once with ``scu``; returns how many were attempted."""
    attempted = 0
    for delivery in due(session=session):
        outcome = scu.send(delivery.report.path, delivery.ae_title, delivery.host, delivery.port)
        record_outcome(delivery, outcome.status, outcome.error, outcome.ok)
        session.commit()
        metrics.DELIVERY_ATTEMPTS.labels(outcome="sent" if outcome.ok else "failed").inc()
        attempted += 1
        if outcome.ok:
            log.info("delivery id=%s sent to %s", delivery.id, delivery.destination)
        else:
            log.warning("delivery id=%s to %s: %s (%s)", delivery.id, delivery.destination, outcome.error, delivery.state)
    return attempted
