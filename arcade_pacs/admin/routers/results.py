"""Analysis results: scores per run and keyframe, regions, and the keyframe pictures."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import Response
from sqlalchemy.orm import Session

from arcade_pacs.admin.deps import get_session
from arcade_pacs.admin.pictures import render_keyframe
from arcade_pacs.admin.schemas import (
    FrameOut,
    InstanceResultOut,
    JobSummary,
    RegionOut,
    ResultDetail,
    ResultSummary,
    TTAViews,
)
from arcade_pacs.db.queries import newest
from arcade_pacs.db.tables import Instance, Result

router = APIRouter(tags=["results"])


def result_summary(r: Result) -> ResultSummary:
    """The headline of one stored result (no patient data: database ids and scores only)."""
    f = r.finding
    return ResultSummary(
        instance_id=r.instance_id,
        probability=f.probability,
        present=f.present,
        threshold=f.threshold,
        tta=TTAViews(original=f.tta_original, flipped=f.tta_flipped),
        keyframes=f.frame_numbers,
        model_version=r.model_version,
        seconds=r.seconds,
        created_at=r.created_at,
    )


@router.get("/results", response_model=list[ResultSummary])
def results(limit: int = Query(50, ge=1, le=500), s: Session = Depends(get_session)):
    """The newest analysis results."""
    return [result_summary(r) for r in newest(Result, limit, session=s)]


@router.get("/results/{instance_id}", response_model=InstanceResultOut)
def result(instance_id: int, s: Session = Depends(get_session)):
    """One instance's result with its per-frame scores, regions and job history."""
    instance = s.get(Instance, instance_id)
    if instance is None:
        raise HTTPException(404, "no such instance")
    job, r = instance.job, instance.result
    detail = None
    if r is not None:
        detail = ResultDetail(
            **result_summary(r).model_dump(),
            regions=[RegionOut(**region.to_json()) for region in r.finding.regions],
            frames=[
                FrameOut(frame_number=f.frame_number, opacification=f.opacification,
                         probability=f.probability, window_scores=f.window_scores)
                for f in r.frames
            ],
        )
    return InstanceResultOut(
        instance_id=instance.id,
        job=None if job is None else JobSummary(state=job.state, attempts=job.attempts, last_error=job.last_error),
        result=detail,
    )


@router.get("/results/{instance_id}/frames/{frame_number}.png", response_class=Response)
def keyframe_picture(instance_id: int, frame_number: int, s: Session = Depends(get_session)):
    """A keyframe with the window scores the model gave it (explainability picture)."""
    instance = s.get(Instance, instance_id)
    if instance is None or instance.result is None:
        raise HTTPException(404, "no result for this instance")
    scored = {f.frame_number: f for f in instance.result.frames if f.window_scores is not None}
    if frame_number not in scored:
        raise HTTPException(404, f"frame {frame_number} is not a keyframe of this result")
    if instance.purged_at is not None:
        raise HTTPException(410, "pixel data deleted by retention (storage.keep_days)")
    png = render_keyframe(instance.path, frame_number, scored[frame_number].window_scores, instance.result.threshold)
    return Response(png, media_type="image/png")
