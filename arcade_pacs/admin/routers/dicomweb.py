"""STOW-RS (PS3.18 10.5, Studies Store): ``POST /dicom-web/studies[/{study}]``, served by a
process that runs the SCP, beside its admin API.

Who may store: a ``[[dicomweb_senders]]`` entry's bearer token (``Authorization: Bearer ...``),
and the audit names that sender as it names a calling AE title. Without any configured sender
the endpoint answers 403, as the SCP refuses an AE it does not know. Each request is checked as
a whole first (token, media type, size, syntax), then every instance is received by the SCP's
own receipt (:mod:`arcade_pacs.receive.stow`).

=====  ===========================================================================================
200    every instance stored (Store Instances Response, ``application/dicom+json``)
202    some stored, the others listed in Failed SOP Sequence with their Failure Reason
409    none stored (each listed with its Failure Reason)
400    not a complete ``multipart/related`` body with the announced boundary (truncated, wrong
       boundary, no part): nothing stored
401    no token, or not a configured sender's token
429    too many failed authentications from this client (the admin's throttle, ``Retry-After``)
403    no sender configured: STOW-RS is off
413    the body passed ``dicomweb.max_request_bytes`` (declared, or counted while it arrived):
       nothing stored
415    not ``multipart/related; type="application/dicom"``
503    storage below its free-space watermark, or ``dicomweb.max_concurrent_requests`` busy
       (``Retry-After``)
=====  ===========================================================================================

Each failed instance is also named in a ``Warning: 299`` header with the reason in words.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Request
from fastapi.responses import JSONResponse
from python_multipart.multipart import parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from arcade_pacs.admin.auth import AuthThrottle, TooManyFailures
from arcade_pacs.admin.deps import AdminState, client_address, get_state
from arcade_pacs.admin.schemas import Problem
from arcade_pacs.db.tables import utcnow
from arcade_pacs.dicom import dicomweb
from arcade_pacs.receive.stow import BodyTooLarge, MalformedBody, Outcome, StoreOutcome, StowReceiver, receive_parts
from arcade_pacs.store.files import disk_space

router = APIRouter(tags=["dicomweb"])

StudyUid = Annotated[str, Path(pattern=r"^[0-9]+(\.[0-9]+)*$", max_length=64,
                               description="Study Instance UID every stored instance must belong to")]
RETRY_AFTER_S = 30
MAX_WARNINGS = 20

_STORE_RESPONSE = {"schema": {"type": "object", "description": "Store Instances Response (PS3.18 Annex I), "
                                                              "DICOM JSON (PS3.18 F.2)"}}
RESPONSES = {
    200: {"description": "every instance stored", "content": {dicomweb.DICOM_JSON: _STORE_RESPONSE}},
    202: {"description": "some instances stored; Failed SOP Sequence lists the others",
          "content": {dicomweb.DICOM_JSON: _STORE_RESPONSE}},
    409: {"description": "no instance stored; Failed SOP Sequence lists each with its Failure Reason",
          "content": {dicomweb.DICOM_JSON: _STORE_RESPONSE}},
    400: {"model": Problem, "description": "not a complete multipart/related body with the announced boundary"},
    401: {"model": Problem, "description": "no token, or not a configured sender's token"},
    429: {"model": Problem, "description": "too many failed authentications from this client (Retry-After)"},
    403: {"model": Problem, "description": "STOW-RS is off: no [[dicomweb_senders]] configured"},
    413: {"model": Problem, "description": "body larger than dicomweb.max_request_bytes"},
    415: {"model": Problem, "description": 'not multipart/related; type="application/dicom"'},
    503: {"model": Problem, "description": "storage below its watermark, or too many requests at once (Retry-After)"},
}
REQUEST_BODY = {"requestBody": {"required": True, "description": "one DICOM Part 10 instance per part", "content": {
    'multipart/related; type="application/dicom"': {"schema": {"type": "string", "format": "binary"}}}}}


def get_receiver(state: AdminState = Depends(get_state)) -> StowReceiver:
    return state.stow


def get_throttle(state: AdminState = Depends(get_state)) -> AuthThrottle:
    """The admin's throttle of failed authentications: a client guessing tokens is slowed down
    whether it guesses the admin's token or a sender's."""
    return state.throttle


@router.post("/dicom-web/studies", responses=RESPONSES, openapi_extra=REQUEST_BODY, response_class=JSONResponse)
async def store_instances(request: Request, receiver: StowReceiver = Depends(get_receiver),
                          throttle: AuthThrottle = Depends(get_throttle),
                          authorization: str | None = Header(default=None)):
    """Store instances (STOW-RS, PS3.18 10.5), each received as a C-STORE would be."""
    return await _store(request, receiver, throttle, authorization, None)


@router.post("/dicom-web/studies/{study}", responses=RESPONSES, openapi_extra=REQUEST_BODY,
             response_class=JSONResponse)
async def store_study_instances(request: Request, study: StudyUid, receiver: StowReceiver = Depends(get_receiver),
                                throttle: AuthThrottle = Depends(get_throttle),
                                authorization: str | None = Header(default=None)):
    """Store instances of one study (STOW-RS): an instance of another study is refused (Failure Reason 0xA900)."""
    return await _store(request, receiver, throttle, authorization, study)


def _problem(status: int, detail: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


async def _store(request: Request, receiver: StowReceiver, throttle: AuthThrottle, authorization: str | None,
                 study: str | None):
    started = utcnow()
    address, port = (request.client.host, request.client.port) if request.client else ("", 0)
    client = ""
    received = 0

    def refuse(status: int, detail: str, headers: dict | None = None, outcome: str = Outcome.REJECTED):
        receiver.record(client=client, address=address, port=port, started_at=started, outcome=outcome,
                        reason=f"HTTP {status}: {detail}"[:500], received=received)
        return _problem(status, detail, headers)

    settings = receiver.settings
    if not settings.dicomweb_senders:
        return refuse(403, "STOW-RS is off: no [[dicomweb_senders]] configured")
    caller = client_address(request)
    try:
        throttle.check(caller)
    except TooManyFailures as exc:
        return refuse(429, str(exc), {"Retry-After": str(exc.seconds)})
    scheme, _, token = (authorization or "").partition(" ")
    client = receiver.sender(token.strip() if scheme.lower() == "bearer" else None) or ""
    if not client:
        throttle.failed(caller, "STOW-RS sender token")
        return refuse(401, "a configured sender's bearer token is required",
                      {"WWW-Authenticate": 'Bearer realm="dicom-web"'})
    throttle.succeeded(caller)
    media, params = parse_options_header(request.headers.get("content-type", ""))
    if media.decode("latin-1").lower() != dicomweb.MULTIPART_RELATED or \
            params.get(b"type", b"").decode("latin-1").lower() != dicomweb.DICOM:
        return refuse(415, 'the body must be multipart/related; type="application/dicom"')
    boundary = params.get(b"boundary", b"").decode("latin-1")
    if not boundary:
        return refuse(400, "the multipart/related Content-Type has no boundary")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > settings.dicomweb.max_request_bytes:
        return refuse(413, f"request body larger than {settings.dicomweb.max_request_bytes} bytes")
    if not receiver.slots.acquire(blocking=False):
        return refuse(503, "too many STOW-RS requests at once", {"Retry-After": str(RETRY_AFTER_S)})
    try:
        storage = settings.storage
        if storage.min_free_mb > 0 and not disk_space(storage.root, storage.min_free_mb).ok:
            return refuse(503, "storage below its free-space watermark", {"Retry-After": str(RETRY_AFTER_S)})
        try:
            spool = receiver.spool(boundary)
        except MalformedBody as exc:
            return refuse(400, str(exc))
        try:
            try:
                async for chunk in request.stream():
                    spool.feed(chunk)
                    received = spool.received
                parts = spool.finish()
            except BodyTooLarge as exc:
                return refuse(413, str(exc), {"Connection": "close"})
            except MalformedBody as exc:
                return refuse(400, str(exc))
            except ClientDisconnect:
                return refuse(400, "the client went away before the body ended", outcome=Outcome.ABORTED)
            if not parts:
                return refuse(400, "no instance in the request")
            outcome = await run_in_threadpool(receive_parts, parts, client, receiver.ctx, study)
        finally:
            spool.discard()
    finally:
        receiver.slots.release()
    status = dicomweb.http_status(outcome.results)
    receiver.record(client=client, address=address, port=port, started_at=started, outcome=Outcome.RELEASED,
                    reason=None if status == 200 else f"HTTP {status}: {outcome.refused} of "
                                                      f"{len(outcome.results)} instances refused",
                    stored=outcome.stored, refused=outcome.refused, received=received)
    return JSONResponse(dicomweb.store_response(outcome.results), status_code=status,
                        media_type=dicomweb.DICOM_JSON, headers=_warnings(outcome))


def _warnings(outcome: StoreOutcome) -> dict[str, str]:
    """One ``Warning`` value per refused part: warn-code 299, miscellaneous persistent (RFC 7234 5.5)."""
    texts = []
    for number, (result, comment) in enumerate(zip(outcome.results, outcome.comments, strict=True), start=1):
        if not result.stored and len(texts) < MAX_WARNINGS:
            reason = (comment or "refused").replace('"', "'").encode("ascii", "replace").decode()
            texts.append(f'299 - "part {number}: 0x{result.status:04X} {reason}"')
    return {"Warning": ", ".join(texts)} if texts else {}
