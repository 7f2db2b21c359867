"""The association audit: one database row per DICOM association, written when it ends.

pynetdicom notifies each stage of an association's life (PS3.8 7.1): ``EVT_ACCEPTED`` and
``EVT_REJECTED`` (A-ASSOCIATE-AC / -RJ), ``EVT_RELEASED`` (A-RELEASE) and ``EVT_ABORTED``
(A-ABORT, A-P-ABORT). Between them, the C-STORE responses the SCP sends (``EVT_DIMSE_SENT``)
count the instances stored and refused, and the PDUs it reads (``EVT_DATA_RECV``) the bytes.
These are notification events, so they run beside the C-STORE handler without touching it.

The row holds AE titles, the peer's address, times, counts and the outcome: no patient data.
An audit failure is logged and never disturbs the association.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime

from pynetdicom import evt
from sqlalchemy.orm import Session, sessionmaker

from arcade_pacs.core import metrics
from arcade_pacs.db.tables import Association, utcnow

log = logging.getLogger(__name__)

C_STORE_RSP = "C_STORE_RSP"


class Outcome:
    """How an association ended (the ``outcome`` column)."""

    RELEASED = "released"
    ABORTED = "aborted"
    REJECTED = "rejected"


@dataclass
class Tally:
    """What one association did so far."""

    started_at: datetime = field(default_factory=utcnow)
    stored: int = 0
    refused: int = 0
    bytes: int = 0


def reject_reason(calling_aet: str, called_aet: str, own_aet: str, allowed: list[str] | None,
                  active: int, maximum: int) -> str:
    """Why pynetdicom rejected an association, in its own order of checks (PS3.8 9.3.4, Table 9-21).

    The A-ASSOCIATE-RJ diagnostic is not handed to the event, so it is derived from the same
    facts: an unknown calling AE title (0x03), an unknown called AE title (0x07, checked later,
    so it wins), too many associations (transient, local limit exceeded, checked last).
    """
    reason = "rejected"
    if allowed and calling_aet.strip() not in [a.strip() for a in allowed]:
        reason = "calling AE title not recognized"
    if called_aet.strip() != own_aet.strip():
        reason = "called AE title not recognized"
    if active > maximum:
        reason = "local limit exceeded (too many associations)"
    return reason


def is_stored(status: int) -> bool:
    """A C-STORE status that means the instance was kept: success or a warning (PS3.4 B.2.3)."""
    return status == 0x0000 or 0xB000 <= status <= 0xBFFF


class AssociationAudit:
    """Counts what each association does and writes its audit row when it ends."""

    def __init__(self, sessions: sessionmaker[Session]):
        self.sessions = sessions
        self._lock = threading.Lock()
        self._open: dict[int, Tally] = {}

    def handlers(self) -> list[tuple]:
        """The ``evt_handlers`` entries to add to the SCP's server."""
        return [
            (evt.EVT_DATA_RECV, self.on_data),
            (evt.EVT_DIMSE_SENT, self.on_dimse_sent),
            (evt.EVT_ACCEPTED, self.on_accepted),
            (evt.EVT_REJECTED, self.on_rejected),
            (evt.EVT_RELEASED, self.on_released),
            (evt.EVT_ABORTED, self.on_aborted),
        ]

    def _tally(self, assoc) -> Tally:
        with self._lock:
            return self._open.setdefault(id(assoc), Tally())

    def on_data(self, event) -> None:
        n = len(event.data)
        self._tally(event.assoc).bytes += n
        metrics.RECEIVED_BYTES.inc(n)

    def on_dimse_sent(self, event) -> None:
        message = event.message
        if type(message).__name__ != C_STORE_RSP:
            return
        status = int(getattr(message.command_set, "Status", 0) or 0)
        tally = self._tally(event.assoc)
        if is_stored(status):
            tally.stored += 1
        else:
            tally.refused += 1

    def on_accepted(self, event) -> None:
        self._tally(event.assoc)

    def on_rejected(self, event) -> None:
        assoc = event.assoc
        ae = assoc.ae
        primitive = assoc.requestor.primitive
        called = str(getattr(primitive, "called_ae_title", "") or "")
        active = len([a for a in ae.active_associations if a.is_acceptor])
        reason = reject_reason(str(assoc.requestor.ae_title or ""), called, str(assoc.acceptor.ae_title),
                               ae.require_calling_aet, active, ae.maximum_associations)
        self.rejected(event, reason)

    def rejected(self, event, reason: str) -> None:
        """An association the SCP rejected itself (``EVT_REQUESTED``), for ``reason``."""
        metrics.ASSOCIATIONS_REJECTED.inc()
        self._finish(event, Outcome.REJECTED, reason)

    def on_released(self, event) -> None:
        self._finish(event, Outcome.RELEASED)

    def on_aborted(self, event) -> None:
        self._finish(event, Outcome.ABORTED)

    def _finish(self, event, outcome: str, reason: str | None = None) -> None:
        """Write the association's row once (an abort after a release is not a second row)."""
        assoc = event.assoc
        with self._lock:
            tally = self._open.pop(id(assoc), None)
        if tally is None and outcome != Outcome.REJECTED:
            return
        tally = tally or Tally()
        metrics.ASSOCIATIONS.labels(outcome=outcome).inc()
        try:
            primitive = assoc.requestor.primitive
            row = Association(
                calling_aet=str(assoc.requestor.ae_title or "")[:16],
                called_aet=str(getattr(primitive, "called_ae_title", "") or assoc.acceptor.ae_title)[:16],
                peer_address=str(assoc.requestor.address)[:255],
                peer_port=int(assoc.requestor.port or 0),
                started_at=tally.started_at,
                ended_at=utcnow(),
                outcome=outcome,
                reason=reason,
                instances_stored=tally.stored,
                instances_refused=tally.refused,
                bytes_received=tally.bytes,
            )
            with self.sessions() as session:
                session.add(row)
                session.commit()
        except Exception:  # never disturb the association for the audit's sake
            log.exception("association audit row not written (%s)", outcome)
