"""Analysis jobs: what the worker did, is doing and will do, with the reason a job failed."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from sqlalchemy.orm import Session

from arcade_pacs.admin.deps import get_session, require_reader
from arcade_pacs.admin.schemas import JobOut
from arcade_pacs.db.queries import newest
from arcade_pacs.db.tables import Job
from arcade_pacs.jobs import JobState

router = APIRouter(tags=["jobs"], dependencies=[Depends(require_reader)])


@router.get("/jobs", response_model=list[JobOut])
def job_list(
    state_filter: JobState | None = None,
    limit: int = Query(100, ge=1, le=1000),
    s: Session = Depends(get_session),
):
    """Jobs, newest first, with attempts and the last error (why a job failed)."""
    where = None if state_filter is None else Job.state == state_filter.value
    return [
        JobOut(id=j.id, instance_id=j.instance_id, state=j.state, attempts=j.attempts,
               last_error=j.last_error, finished_at=j.finished_at)
        for j in newest(Job, limit, session=s, where=where)
    ]
