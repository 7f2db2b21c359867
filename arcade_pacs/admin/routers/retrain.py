"""Retraining in the background: start one (token), follow its progress and outcome."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException

from arcade_pacs.admin.deps import AdminState, DbId, get_state, require_reader, require_token
from arcade_pacs.admin.schemas import RetrainAccepted, RetrainRequest, RetrainRunOut
from arcade_pacs.db.retraining import RetrainBusy, RetrainState

router = APIRouter(tags=["retrain"])


def manager(state: AdminState = Depends(get_state)):
    """The service's retraining manager (:class:`arcade_pacs.training.retrain.RetrainManager`)."""
    if state.retrain is None:
        raise HTTPException(503, "retraining is not available in this process")
    return state.retrain


@router.post("/retrain", status_code=202, response_model=RetrainAccepted, dependencies=[Depends(require_token)])
def retrain(request: RetrainRequest, retrainer=Depends(manager)):
    """Start retraining on the configured data (one run at a time); poll ``GET /retrain/{id}``."""
    try:
        run_id = retrainer.start(request.model_dump(exclude_none=True))
    except RetrainBusy as exc:
        raise HTTPException(409, str(exc)) from exc
    return RetrainAccepted(id=run_id, state=RetrainState.QUEUED.value)


@router.get("/retrain/{run_id}", response_model=RetrainRunOut, dependencies=[Depends(require_reader)])
def retrain_status(run_id: DbId, retrainer=Depends(manager)):
    """Progress and outcome of a retraining run."""
    body = retrainer.get(run_id)
    if body is None:
        raise HTTPException(404, "no such retraining run")
    return body
