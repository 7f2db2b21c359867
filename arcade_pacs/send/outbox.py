"""The outbox: every delivery of a result object is a row, so nothing is dropped silently and
nothing gives up quietly.

A study's result is a report (one version) of one or more objects of any kind (the SR, result
images, presentation states: :class:`~arcade_pacs.settings.ObjectKind`); each destination
receives the kinds its ``objects`` setting names, one delivery per object. Every delivery, of
whatever kind, follows the same states:

::

    pending --peer success--> sent
       |  \\--transport error, 0xA7xx (refused: out of resources)--> pending, back-off with jitter
       |   \\--0xA9xx, 0xCxxx, other failure statuses--> failed at once, the peer's status kept
       |    \\--still not sent outbox.max_age_h after it was queued--> failed (/health degraded)
       |--a newer report of the study replaced it before it was sent--> superseded
       \\--its destination was removed from the configuration--> cancelled
    failed --POST /deliveries/{id}/retry--> pending (its age counts again from then)

A delivery names its destination; the address is looked up in the configuration when sending.
Senders claim one delivery at a time with a lease (:mod:`arcade_pacs.db.claims`), so two
senders, in one process or many, never send the same row; a sender that dies after the peer
acknowledged but before the commit leaves the row to be sent again after the lease, and it is
the same stored file, so the same SOP Instance UID: the peer sees a duplicate of one object,
never two different ones. A newer report supersedes the unsent deliveries of every object of
the one it replaces together (:func:`supersede_pending`). Statuses are those of the Storage
Service Class, PS3.4 B.2.3.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable
from datetime import timedelta
from enum import StrEnum

from sqlalchemy import and_, exists, or_, select, update
from sqlalchemy.orm import Session, aliased

from arcade_pacs.core import faults, metrics
from arcade_pacs.db import claims, queries
from arcade_pacs.db.tables import Delivery, Report, ResultObject, utcnow
from arcade_pacs.settings import Destination, OutboxSettings

log = logging.getLogger(__name__)


class DeliveryState(StrEnum):
    """Every state of a delivery."""

    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"
    SUPERSEDED = "superseded"
    CANCELLED = "cancelled"


class Verdict(StrEnum):
    """What one attempt's outcome means for the delivery."""

    SENT = "sent"
    RETRY = "retry"
    FAIL = "fail"


RESOURCE_LIMITATION = 0x0213
"""A general DIMSE failure a peer uses while overloaded (PS3.7 C.5): passes, so retried."""


def verdict(status: int | None, ok: bool, final: bool = False) -> Verdict:
    """Classify a C-STORE outcome (PS3.4 B.2.3), or a STOW-RS one (PS3.18 Table I.2-2 uses the same codes).

    No status (association refused or aborted, timeout, connection error) and Refused: Out of
    Resources (0xA7xx) may pass: retry. Error: Data Set Does Not Match SOP Class (0xA9xx),
    Cannot Understand (0xCxxx) and every other failure will not pass by sending the same
    object again: fail at once, keeping the status. ``final``: a refusal without a status that
    will not pass either (an HTTP 4xx without a Failure Reason): fail at once.
    """
    if ok:
        return Verdict.SENT
    if final:
        return Verdict.FAIL
    if status is None or 0xA700 <= status <= 0xA7FF or status == RESOURCE_LIMITATION:
        return Verdict.RETRY
    return Verdict.FAIL


def backoff_s(attempts: int, cfg: OutboxSettings, rng: random.Random | None = None) -> float:
    """Delay before the next try after ``attempts`` failed ones: doubling from ``backoff_initial_s``,
    capped at ``backoff_cap_s``, drawn from ``[d * (1 - jitter), d]`` so senders do not align."""
    delay = min(cfg.backoff_cap_s, cfg.backoff_initial_s * 2 ** max(0, attempts - 1))
    return delay * (1.0 - cfg.jitter * (rng or random).random())


def enqueue(report: Report, destinations: Iterable[Destination], *, session: Session,
            objects: Iterable[ResultObject] | None = None) -> list[Delivery]:
    """Queue a delivery of each of ``report``'s objects (or of ``objects``, those just added: the
    SR first, its derived objects later) to each destination that receives its kind (by name;
    sent by a :class:`Sender`)."""
    now = utcnow()
    objects = list(report.objects if objects is None else objects)
    rows = [
        Delivery(report=report, object=obj, destination=dest.name, state=DeliveryState.PENDING.value,
                 queued_at=now, next_attempt_at=now)
        for dest in destinations
        for obj in objects
        if obj.kind in dest.objects
    ]
    session.add_all(rows)
    return rows


def _replaced():
    """The condition of a delivery whose report a newer report of its study replaces."""
    newer = aliased(Report)
    return exists().where(newer.predecessor_id == Delivery.report_id)


def claim_delivery(destination: str, owner: str, lease_s: float, *, session: Session) -> Delivery | None:
    """Take the oldest due delivery to ``destination`` with a lease; ``None`` when none is due.

    A delivery whose report was replaced meanwhile is never taken (it was being sent when the
    newer report came, and its attempt failed: see :func:`record_outcome`).
    """
    now = utcnow()
    claimable = and_(
        Delivery.state == DeliveryState.PENDING.value,
        Delivery.destination == destination,
        Delivery.next_attempt_at <= now,
        or_(Delivery.lease_until.is_(None), Delivery.lease_until < now),
        ~_replaced(),
    )
    taken = claims.claim_rows(
        Delivery, claimable, [Delivery.next_attempt_at, Delivery.id],
        {"lease_owner": owner, "lease_until": claims.lease_until(lease_s, now)},
        session=session,
    )
    return session.get(Delivery, taken[0], populate_existing=True) if taken else None


def record_outcome(
    delivery_id: int, owner: str, status: int | None, error: str | None, ok: bool,
    cfg: OutboxSettings, *, session: Session, final: bool = False,
) -> DeliveryState | None:
    """Record one attempt by ``owner`` (not committed); ``None`` when the claim was lost meanwhile.

    An attempt that did not deliver an object whose report was replaced while it was being sent
    (:func:`supersede_pending` leaves a leased delivery alone) makes it ``superseded``: the older
    version is never sent after the newer one.
    """
    delivery = session.get(Delivery, delivery_id, populate_existing=True)
    if delivery is None or delivery.lease_owner != owner or delivery.state != DeliveryState.PENDING.value:
        return None
    now = utcnow()
    attempts = delivery.attempts + 1
    values = {"attempts": attempts, "last_status": status, "last_error": error, "lease_owner": None, "lease_until": None}
    kind = verdict(status, ok, final)
    replaced = kind is not Verdict.SENT and session.scalar(
        select(exists().where(Report.predecessor_id == delivery.report_id)))
    if kind is Verdict.SENT:
        values |= {"state": DeliveryState.SENT.value, "sent_at": now, "last_error": None}
    elif replaced:
        values |= {"state": DeliveryState.SUPERSEDED.value}
    elif kind is Verdict.FAIL:
        values |= {"state": DeliveryState.FAILED.value}
    elif now - delivery.queued_at >= timedelta(hours=cfg.max_age_h):
        values |= {"state": DeliveryState.FAILED.value,
                   "last_error": f"gave up after {cfg.max_age_h:g} h and {attempts} attempts; last: {error}"[:2000]}
    else:
        values |= {"next_attempt_at": now + timedelta(seconds=backoff_s(attempts, cfg))}
    changed = session.execute(
        update(Delivery)
        .where(Delivery.id == delivery_id, Delivery.lease_owner == owner,
               Delivery.state == DeliveryState.PENDING.value)
        .values(**values)
    ).rowcount
    if not changed:
        return None
    session.refresh(delivery)
    return DeliveryState(delivery.state)


def retry(delivery_id: int, *, session: Session) -> bool:
    """Put a failed delivery back in the outbox (admin action); False when it is not failed."""
    now = utcnow()
    return bool(
        session.execute(
            update(Delivery)
            .where(Delivery.id == delivery_id, Delivery.state == DeliveryState.FAILED.value)
            .values(state=DeliveryState.PENDING.value, attempts=0, next_attempt_at=now, queued_at=now,
                    lease_owner=None, lease_until=None)
        ).rowcount
    )


def supersede_pending(report_id: int, *, session: Session) -> None:
    """A newer report replaces report ``report_id``: the unsent deliveries of all its objects
    (SR, result images, presentation states) will not be sent.

    One being sent right now (live lease) is left to finish and be recorded as it went.
    """
    now = utcnow()
    session.execute(
        update(Delivery)
        .where(
            Delivery.report_id == report_id,
            Delivery.state.in_([DeliveryState.PENDING.value, DeliveryState.FAILED.value]),
            or_(Delivery.lease_until.is_(None), Delivery.lease_until < now),
        )
        .values(state=DeliveryState.SUPERSEDED.value)
    )


def cancel_removed(configured: Iterable[str], *, session: Session) -> int:
    """Cancel unsent deliveries to destinations no longer configured (committed); returns how many."""
    names = list(configured)
    where = [Delivery.state.in_([DeliveryState.PENDING.value, DeliveryState.FAILED.value])]
    if names:
        where.append(Delivery.destination.not_in(names))
    count = session.execute(
        update(Delivery).where(*where).values(
            state=DeliveryState.CANCELLED.value, lease_owner=None, lease_until=None,
            last_error="destination removed from the configuration",
        )
    ).rowcount
    session.commit()
    if count:
        log.warning("cancelled %d deliveries to destinations no longer configured", count)
    return count


def counts_by_state(*, session: Session) -> dict[str, int]:
    """Number of deliveries in each state (every state present, zero included)."""
    return queries.counts_by_state(Delivery.state, DeliveryState, session=session)


def send_next(scu, destination: Destination, owner: str, cfg: OutboxSettings, *, session: Session) -> bool:
    """Claim and attempt the next due delivery to ``destination``; False when none was due.

    ``scu`` is the destination's sender implementation: anything with ``send_to(path,
    destination) -> SendOutcome`` (the C-STORE SCU, or the STOW-RS client for ``kind = "dicomweb"``).

    Never raises on a network failure (the SCU returns an outcome); the claim is committed
    before the network is touched, and the outcome after it.
    """
    delivery = claim_delivery(destination.name, owner, cfg.lease_s, session=session)
    if delivery is None:
        return False
    delivery_id, path = delivery.id, delivery.path
    outcome = scu.send_to(path, destination)
    if outcome.ok:
        faults.point("sent", destination.name)
    state = record_outcome(delivery_id, owner, outcome.status, outcome.error, outcome.ok, cfg, session=session,
                           final=outcome.final)
    session.commit()
    metrics.DELIVERY_ATTEMPTS.labels(outcome="sent" if outcome.ok else "failed").inc()
    if state is None:
        log.warning("delivery id=%s: claim lost before its outcome was recorded", delivery_id)
    elif state is DeliveryState.SENT:
        log.info("delivery id=%s sent to %s", delivery_id, destination.name)
    else:
        log.warning("delivery id=%s to %s: %s (%s)", delivery_id, destination.name, outcome.error, state.value)
    return True
