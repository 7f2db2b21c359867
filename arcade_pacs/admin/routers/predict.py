"""``POST /predict``: the original ARCADE service's endpoint, one uploaded picture classified.

Bounded in every direction, so a public-facing upload cannot knock the service over: the body
is counted while it arrives and refused past ``admin.predict_max_mb`` (413,
:class:`arcade_pacs.admin.limits.BodyLimit`); the declared dimensions are checked before any
pixel buffer exists (413, same limits as receipt); the file type is checked by its magic bytes
(415); undecodable content is 422; at most ``admin.predict_concurrency`` predictions run at once
(429 beyond). Every refusal carries a one-line reason.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, File, HTTPException, UploadFile
from fastapi.concurrency import run_in_threadpool

from arcade_pacs.admin.deps import RESEARCH_NOTICE, AdminState, get_state
from arcade_pacs.admin.schemas import PredictResponse
from arcade_pacs.pipeline.frames import FrameError
from arcade_pacs.pipeline.predict import predict_bytes
from arcade_pacs.pipeline.upload import UnsupportedUpload, UploadTooLarge, check_upload

router = APIRouter(tags=["predict"])


def _predict(data: bytes, state: AdminState) -> dict:
    limits = state.settings.pipeline
    check_upload(data, limits.max_rows, limits.max_columns, limits.max_frames)
    classifier = state.model.get()
    body = predict_bytes(data, classifier.predict, classifier.info.threshold, limits.keyframes, limits.max_frames)
    return body | {"model_version": classifier.info.version}


@router.post("/predict", response_model=PredictResponse,
             responses={413: {"description": "file or declared image too large"}, 415: {"description": "not DICOM, PNG or JPEG"},
                        422: {"description": "content cannot be decoded"}, 429: {"description": "too many predictions at once"}})
async def predict(file: UploadFile = File(...), state: AdminState = Depends(get_state)):
    """Classify one uploaded PNG, JPEG or DICOM file."""
    if state.model is None:
        raise HTTPException(503, "no model in this process")
    if not state.predict_slots.acquire(blocking=False):
        raise HTTPException(429, f"at most {state.settings.admin.predict_concurrency} predictions at once; try again",
                            headers={"Retry-After": "5"})
    try:
        limit = int(state.settings.admin.predict_max_mb * 1024 * 1024)
        data = await file.read(limit + 1)
        if len(data) > limit:
            raise HTTPException(413, f"file larger than {state.settings.admin.predict_max_mb:g} MB")
        if not data:
            raise HTTPException(400, "empty file")
        try:
            body = await run_in_threadpool(_predict, data, state)
        except UnsupportedUpload as exc:
            raise HTTPException(415, str(exc)) from exc
        except UploadTooLarge as exc:
            raise HTTPException(413, str(exc)) from exc
        except FrameError as exc:
            raise HTTPException(422, str(exc).splitlines()[0][:300] if str(exc) else "cannot decode") from exc
        except MemoryError as exc:
            raise HTTPException(413, "image too large to decode") from exc
    finally:
        state.predict_slots.release()
    return body | {"notice": RESEARCH_NOTICE}
