"""Studies: what arrived, what the model found, where the SR went; and re-analysing one (token)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Query
from sqlalchemy.orm import Session

from arcade_pacs import jobs
from arcade_pacs.admin.deps import AdminState, Offset, Uid, get_session, get_state, require_reader, require_token
from arcade_pacs.admin.schemas import ReanalyseAccepted, StudyDetail, StudyPage
from arcade_pacs.admin.views import study_detail, study_summary
from arcade_pacs.db.queries import count_rows, studies_page, study_by_uid
from arcade_pacs.db.tables import Study

router = APIRouter(tags=["studies"])


@router.get("/studies", response_model=StudyPage, dependencies=[Depends(require_reader)])
def studies(
    limit: int = Query(20, ge=1, le=200),
    offset: Offset = 0,
    state: AdminState = Depends(get_state),
    s: Session = Depends(get_session),
):
    """Studies, newest first: UID, received time, runs, finding and the SR's delivery state.

    Patient names and IDs appear only when ``admin.show_patient_identity`` is set.
    """
    show = state.settings.admin.show_patient_identity
    return StudyPage(
        total=count_rows(Study, session=s),
        offset=offset,
        limit=limit,
        items=[study_summary(study, show) for study in studies_page(limit, offset, session=s)],
    )


@router.get("/studies/{study_uid}", response_model=StudyDetail, dependencies=[Depends(require_reader)])
def study(study_uid: Uid, state: AdminState = Depends(get_state), s: Session = Depends(get_session)):
    """One study: per run its keyframes, frame and run probabilities, TTA views and regions; its SRs
    with their deliveries and links to the SR file and its text rendering."""
    found = study_by_uid(study_uid, session=s)
    if found is None:
        raise HTTPException(404, "no such study")
    return study_detail(found, state.settings.admin.show_patient_identity)


@router.post("/studies/{study_uid}/reanalyse", status_code=202, response_model=ReanalyseAccepted,
             dependencies=[Depends(require_token)])
def reanalyse(study_uid: Uid, s: Session = Depends(get_session)):
    """Analyse every run of the study again (e.g. with a new model); a new SR follows and
    supersedes the previous one. 409 when every run is already queued or being analysed."""
    found = study_by_uid(study_uid, session=s)
    if found is None:
        raise HTTPException(404, "no such study")
    queued, busy = jobs.requeue_study(found, session=s)
    if not queued:
        raise HTTPException(409, "every run of this study is already queued or being analysed")
    s.commit()
    return ReanalyseAccepted(study_instance_uid=study_uid, runs_queued=queued, runs_busy=busy)
