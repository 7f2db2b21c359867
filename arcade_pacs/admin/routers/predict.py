"""``POST /predict``: the original ARCADE service's endpoint, one uploaded picture classified."""

from __future__ import annotations

from fastapi import APIRouter, Depends, File, HTTPException, UploadFile
from fastapi.concurrency import run_in_threadpool

from arcade_pacs.admin.deps import RESEARCH_NOTICE, AdminState, get_state
from arcade_pacs.admin.schemas import PredictResponse, Problem
from arcade_pacs.pipeline.frames import FrameError
from arcade_pacs.pipeline.predict import predict_bytes

router = APIRouter(tags=["predict"])

MAX_UPLOAD_BYTES = 512 * 1024 * 1024


@router.post("/predict", response_model=PredictResponse, responses={
    422: {"model": Problem, "description": "the file cannot be analysed (the reason), or the request is invalid"}})
async def predict(file: UploadFile = File(...), state: AdminState = Depends(get_state)):
    """Classify one uploaded PNG, JPEG or DICOM file."""
    data = await file.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        raise HTTPException(413, "file too large")
    if not data:
        raise HTTPException(400, "empty file")
    classifier = state.model.get()
    try:
        body = await run_in_threadpool(
            predict_bytes,
            data,
            classifier.predict,
            classifier.info.threshold,
            state.settings.pipeline.keyframes,
            state.settings.pipeline.max_frames,
        )
    except FrameError as exc:
        raise HTTPException(422, str(exc)) from exc
    return body | {"model_version": classifier.info.version, "notice": RESEARCH_NOTICE}
