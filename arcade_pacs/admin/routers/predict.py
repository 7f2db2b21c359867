"""``POST /predict``: the original ARCADE service's endpoint, one uploaded picture classified."""

from __future__ import annotations

import anyio
from anyio.lowlevel import RunVar
from fastapi import APIRouter, Depends, File, HTTPException, UploadFile

from arcade_pacs.admin.deps import RESEARCH_NOTICE, AdminState, get_state
from arcade_pacs.admin.schemas import PredictResponse
from arcade_pacs.pipeline.frames import FrameError
from arcade_pacs.pipeline.predict import predict_bytes

router = APIRouter(tags=["predict"])

MAX_UPLOAD_BYTES = 512 * 1024 * 1024
PREPARING_AT_ONCE = 4
"""Uploads decoded and cut into windows at the same time. More only queue at the engine while
each holds its frames and tensors (50 concurrent users took the process past 2 GB); the
inference batcher packs the windows of those in flight."""

_limiter: RunVar[anyio.CapacityLimiter] = RunVar("predict_limiter")


def limiter() -> anyio.CapacityLimiter:
    """One limiter per event loop (a test may run several apps, each in its own loop)."""
    try:
        return _limiter.get()
    except LookupError:
        _limiter.set(anyio.CapacityLimiter(PREPARING_AT_ONCE))
        return _limiter.get()


@router.post("/predict", response_model=PredictResponse)
async def predict(file: UploadFile = File(...), state: AdminState = Depends(get_state)):
    """Classify one uploaded PNG, JPEG or DICOM file."""
    data = await file.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        raise HTTPException(413, "file too large")
    if not data:
        raise HTTPException(400, "empty file")
    classifier = state.model.get()
    try:
        body = await anyio.to_thread.run_sync(
            predict_bytes,
            data,
            classifier.predict,
            classifier.info.threshold,
            state.settings.pipeline.keyframes,
            state.settings.pipeline.max_frames,
            limiter=limiter(),
        )
    except FrameError as exc:
        raise HTTPException(422, str(exc)) from exc
    return body | {"model_version": classifier.info.version, "notice": RESEARCH_NOTICE}
