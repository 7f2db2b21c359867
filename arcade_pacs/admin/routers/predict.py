"""``POST /predict``: the original ARCADE service's endpoint, one uploaded picture classified.

Bounded in every direction, so a public-facing upload cannot knock the service over: the body
is counted while it arrives and refused past ``admin.predict_max_mb`` (413,
:class:`arcade_pacs.admin.limits.BodyLimit`); the declared dimensions are checked before any
pixel buffer exists (413, same limits as receipt); the file type is checked by its magic bytes
(415); undecodable content is 422; at most ``admin.predict_concurrency`` predictions run at once
(429 beyond). Every refusal carries a one-line reason.

Access: open on an admin without a token (loopback only), otherwise the reader's access
(:func:`arcade_pacs.admin.deps.require_reader`: the token or a dashboard session): a prediction
costs the model's time, and an anonymous client could otherwise hold every slot. The dashboard's
upload page has slots of its own (``admin.upload_concurrency``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

import anyio
from anyio.lowlevel import RunVar
from fastapi import APIRouter, Depends, File, HTTPException, UploadFile

from arcade_pacs.admin.deps import RESEARCH_NOTICE, AdminState, get_state, require_reader
from arcade_pacs.admin.schemas import PredictResponse, Problem
from arcade_pacs.pipeline.part10 import InputError, Kind, Limits
from arcade_pacs.pipeline.predict import predict_bytes
from arcade_pacs.pipeline.upload import check_upload

router = APIRouter(tags=["predict"])
T = TypeVar("T")

PREPARING_AT_ONCE = 4
"""Uploads decoded and cut into windows at the same time. More only queue at the engine while
each holds its frames and tensors (50 concurrent users took the process past 2 GB); the
inference batcher packs the windows of those in flight."""

_limiter: RunVar[anyio.CapacityLimiter] = RunVar("predict_limiter")

HTTP_STATUS: dict[Kind, int] = {
    Kind.UNKNOWN_FORMAT: 415,
    Kind.TOO_LARGE: 413,
    Kind.UNREADABLE: 422,
    Kind.UNSUPPORTED: 422,
    Kind.INCONSISTENT: 422,
    Kind.TRUNCATED: 422,
}
"""What an upload refused at the door (:mod:`arcade_pacs.pipeline.part10`) is answered, by its kind.
The SCP's table of DICOM statuses is ``arcade_pacs.receive.receipt.DICOM_STATUS``."""


def limiter() -> anyio.CapacityLimiter:
    """One limiter per event loop (a test may run several apps, each in its own loop)."""
    try:
        return _limiter.get()
    except LookupError:
        _limiter.set(anyio.CapacityLimiter(PREPARING_AT_ONCE))
        return _limiter.get()


def _predict(data: bytes, state: AdminState) -> dict:
    classifier = state.model.get()
    limits = state.settings.pipeline
    body = predict_bytes(data, classifier.predict, classifier.info.threshold, limits.keyframes, limits.max_frames,
                         Limits.of(state.settings))
    return body | {"model_version": classifier.info.version}


async def bounded_analysis(file: UploadFile, state: AdminState, analyse: Callable[[bytes, AdminState], T],
                           slots: threading.Semaphore | None = None, at_once: int | None = None) -> T:
    """Read ``file`` and run ``analyse(data, state)`` within every bound of the module docstring.

    The one guarded path for an uploaded file, shared by ``POST /predict`` and the dashboard's
    upload page, each with its own ``slots`` (``at_once`` of them; /predict's by default).
    Raises :class:`HTTPException` (400/413/415/422/429/503) with a one-line reason.
    """
    if slots is None:
        slots, at_once = state.predict_slots, state.settings.admin.predict_concurrency
    if state.model is None:
        raise HTTPException(503, "no model in this process")
    if not slots.acquire(blocking=False):
        raise HTTPException(429, f"at most {at_once} predictions at once; try again", headers={"Retry-After": "5"})
    try:
        limit = int(state.settings.admin.predict_max_mb * 1024 * 1024)
        data = await file.read(limit + 1)
        if len(data) > limit:
            raise HTTPException(413, f"file larger than {state.settings.admin.predict_max_mb:g} MB")
        if not data:
            raise HTTPException(400, "empty file")
        limits = state.settings.pipeline
        try:
            check_upload(data, limits.max_rows, limits.max_columns, limits.max_frames, Limits.of(state.settings))
            return await anyio.to_thread.run_sync(analyse, data, state, limiter=limiter())
        except InputError as exc:
            reason = str(exc).splitlines()[0][:300] if str(exc) else "cannot decode"
            raise HTTPException(HTTP_STATUS[exc.kind], reason) from exc
        except MemoryError as exc:
            raise HTTPException(413, "image too large to decode") from exc
    finally:
        slots.release()


@router.post("/predict", response_model=PredictResponse, responses={
    413: {"model": Problem, "description": "file or declared image too large"},
    415: {"model": Problem, "description": "not DICOM, PNG or JPEG"},
    422: {"model": Problem, "description": "the file cannot be analysed (the reason), or the request is invalid"},
    401: {"model": Problem, "description": "a token is configured and the request carries neither it nor a session"},
    429: {"model": Problem, "description": "too many predictions at once, or too many failed tokens; try again"}},
    dependencies=[Depends(require_reader)])
async def predict(file: UploadFile = File(...), state: AdminState = Depends(get_state)):
    """Classify one uploaded PNG, JPEG or DICOM file."""
    body = await bounded_analysis(file, state, _predict)
    return body | {"notice": RESEARCH_NOTICE}
