"""Analysis results: scores per run and keyframe, regions, and the pictures that explain them."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import Response
from sqlalchemy.orm import Session

from arcade_pacs.admin import pictures
from arcade_pacs.admin.deps import DbId, FrameNumber, get_session, require_reader
from arcade_pacs.admin.schemas import (
    FrameOut,
    InstanceResultOut,
    JobSummary,
    ResultDetail,
    ResultSummary,
)
from arcade_pacs.admin.views import headline, regions_out, run_result
from arcade_pacs.db.queries import newest
from arcade_pacs.db.tables import Instance, Result
from arcade_pacs.report.marks import selected_regions

router = APIRouter(tags=["results"], dependencies=[Depends(require_reader)])

PNG = {200: {"content": {"image/png": {}}}}


def result_summary(r: Result) -> ResultSummary:
    """The headline of one stored result (no patient data: database ids and scores only)."""
    return ResultSummary(instance_id=r.instance_id, keyframes=r.finding.frame_numbers, **headline(r))


@router.get("/results", response_model=list[ResultSummary])
def results(limit: int = Query(50, ge=1, le=500), s: Session = Depends(get_session)):
    """The newest analysis results."""
    return [result_summary(r) for r in newest(Result, limit, session=s)]


@router.get("/results/{instance_id}", response_model=InstanceResultOut)
def result(instance_id: DbId, s: Session = Depends(get_session)):
    """One instance's result with its per-frame scores, regions and job history."""
    instance = s.get(Instance, instance_id)
    if instance is None:
        raise HTTPException(404, "no such instance")
    job, r = instance.job, instance.result
    detail = None
    if r is not None:
        detail = ResultDetail(
            **result_summary(r).model_dump(),
            regions=regions_out(r.finding),
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


def analysed(instance_id: int, s: Session) -> Instance:
    instance = s.get(Instance, instance_id)
    if instance is None or instance.result is None:
        raise HTTPException(404, "no result for this instance")
    return instance


def scored_frame(instance: Instance, frame_number: int):
    scored = {f.frame_number: f for f in instance.result.frames if f.window_scores is not None}
    if frame_number not in scored:
        raise HTTPException(404, f"frame {frame_number} is not a keyframe of this result")
    return scored[frame_number]


def pixels_of(instance: Instance) -> str:
    """The stored file whose pixels a picture needs; 410 once retention deleted them."""
    if instance.purged_at is not None:
        raise HTTPException(410, "pixel data deleted by retention (storage.keep_days)")
    return instance.path


def png(data: bytes) -> Response:
    return Response(data, media_type="image/png", headers={"Cache-Control": "private, max-age=60"})


@router.get("/results/{instance_id}/frames/{frame_number}.png", response_class=Response, responses=PNG)
def keyframe_picture(instance_id: DbId, frame_number: FrameNumber, s: Session = Depends(get_session)):
    """A keyframe with a heat map of its window scores and the SR's regions outlined (where it looked)."""
    instance = analysed(instance_id, s)
    scores = scored_frame(instance, frame_number)
    frame = pictures.load_frame(pixels_of(instance), frame_number)
    finding = instance.result.finding
    return png(pictures.keyframe_png(frame, scores.window_scores, finding.threshold, selected_regions(finding)))


@router.get("/results/{instance_id}/frames/{frame_number}/histogram.png", response_class=Response, responses=PNG)
def histogram_picture(instance_id: DbId, frame_number: FrameNumber, s: Session = Depends(get_session)):
    """The keyframe's pixel-intensity histogram (how the contrast dye is distributed)."""
    instance = analysed(instance_id, s)
    scored_frame(instance, frame_number)
    return png(pictures.histogram_png(pictures.load_frame(pixels_of(instance), frame_number)))


@router.get("/results/{instance_id}/tta.png", response_class=Response, responses=PNG)
def tta_picture(instance_id: DbId, s: Session = Depends(get_session)):
    """TTA agreement: each keyframe's original and mirrored view at its best window."""
    instance = analysed(instance_id, s)
    run = run_result(instance.result)
    views = [(k.frame_number, k.tta) for k in run.keyframes if k.tta is not None]
    if not views:
        raise HTTPException(404, "this result predates stored TTA views; re-analyse the study")
    return png(pictures.tta_png([n for n, _ in views], [t.original for _, t in views],
                                [t.flipped for _, t in views], run.threshold))


@router.get("/results/{instance_id}/opacification.png", response_class=Response, responses=PNG)
def opacification_picture(instance_id: DbId, s: Session = Depends(get_session)):
    """Opacification of every frame, the keyframes marked."""
    r = analysed(instance_id, s).result
    return png(pictures.opacification_png([f.opacification for f in r.frames], list(r.keyframes)))


@router.get("/results/{instance_id}/probability.png", response_class=Response, responses=PNG)
def probability_picture(instance_id: DbId, s: Session = Depends(get_session)):
    """The run's probability and each keyframe's against the threshold."""
    f = analysed(instance_id, s).result.finding
    return png(pictures.probability_png(f.probability, f.threshold, f.frame_numbers, f.frame_probabilities))
