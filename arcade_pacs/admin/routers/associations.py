"""The association audit: who called the SCP, from where, when, with how many instances, and how it ended."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from sqlalchemy.orm import Session

from arcade_pacs.admin.deps import Offset, get_session, require_reader
from arcade_pacs.admin.schemas import AssociationPage
from arcade_pacs.admin.views import association_out
from arcade_pacs.db.queries import count_rows, page
from arcade_pacs.db.tables import Association

router = APIRouter(tags=["associations"], dependencies=[Depends(require_reader)])


@router.get("/associations", response_model=AssociationPage)
def associations(
    limit: int = Query(50, ge=1, le=500),
    offset: Offset = 0,
    s: Session = Depends(get_session),
):
    """DICOM associations, newest first: calling AE, peer address, time, instances, outcome."""
    rows = page(Association, limit, offset, session=s)
    return AssociationPage(total=count_rows(Association, session=s), offset=offset, limit=limit,
                           items=[association_out(a) for a in rows])
