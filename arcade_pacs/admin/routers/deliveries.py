"""Deliveries of result objects (SRs, result images, presentation states): the outbox's rows, with the
peer's last status, and retrying a failed one."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Query
from sqlalchemy.orm import Session

from arcade_pacs.admin.deps import DbId, get_session, require_reader, require_token
from arcade_pacs.admin.schemas import DeliveryOut, DeliveryRetried
from arcade_pacs.admin.views import delivery_out
from arcade_pacs.db.queries import newest
from arcade_pacs.db.tables import Delivery
from arcade_pacs.send import outbox

router = APIRouter(tags=["deliveries"], dependencies=[Depends(require_reader)])


@router.get("/deliveries", response_model=list[DeliveryOut])
def deliveries(limit: int = Query(100, ge=1, le=1000), s: Session = Depends(get_session)):
    """Deliveries of every kind of object, newest first, with the peer's last status."""
    return [delivery_out(d) for d in newest(Delivery, limit, session=s)]


@router.post("/deliveries/{delivery_id}/retry", response_model=DeliveryRetried,
             dependencies=[Depends(require_token)])
def retry_delivery(delivery_id: DbId, s: Session = Depends(get_session)):
    """Put a failed delivery back in the outbox."""
    if not outbox.retry(delivery_id, session=s):
        raise HTTPException(409, "delivery is not in state failed")
    s.commit()
    return DeliveryRetried(id=delivery_id, state=outbox.DeliveryState.PENDING.value)
