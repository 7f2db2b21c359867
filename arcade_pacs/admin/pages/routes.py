"""The dashboard's routes (``/ui/...``): pages, the fragments htmx refreshes, and token-protected forms."""

from __future__ import annotations

import logging
import secrets

from fastapi import APIRouter, Depends, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import ValidationError
from sqlalchemy.orm import Session

from arcade_pacs import jobs
from arcade_pacs.admin import pictures
from arcade_pacs.admin.auth import TooManyFailures
from arcade_pacs.admin.deps import (
    RESEARCH_NOTICE,
    SESSION_COOKIE,
    AdminState,
    DbId,
    Offset,
    Uid,
    client_address,
    get_session,
    get_state,
    require_reader,
    require_token,
)
from arcade_pacs.admin.pages import TEMPLATES
from arcade_pacs.admin.routers.health import readiness, status_body
from arcade_pacs.admin.routers.predict import bounded_analysis
from arcade_pacs.admin.schemas import RetrainRequest
from arcade_pacs.admin.views import association_out, study_detail, study_summary
from arcade_pacs.db.queries import count_rows, newest, page, studies_page, study_by_uid
from arcade_pacs.db.retraining import RetrainBusy
from arcade_pacs.db.tables import Association, Delivery, RetrainRun, Study
from arcade_pacs.pipeline.analyse import analyse_frames
from arcade_pacs.pipeline.frames import frames_from_bytes
from arcade_pacs.pipeline.part10 import Limits
from arcade_pacs.report.marks import selected_regions
from arcade_pacs.send import outbox
from arcade_pacs.send.outbox import DeliveryState

log = logging.getLogger(__name__)


def ui_reader(request: Request, state: AdminState = Depends(get_state)) -> None:
    """Pages follow the API's reading policy (:func:`require_reader`); a refused browser is sent to log in."""
    try:
        require_reader(request, state, request.headers.get("authorization"))
    except HTTPException:
        raise HTTPException(303, "log in first", headers={"Location": "/ui/login"}) from None


router = APIRouter(prefix="/ui", include_in_schema=False)
pages = APIRouter(prefix="/ui", include_in_schema=False, dependencies=[Depends(ui_reader)])

OLD_TOKEN_COOKIE = "arcade_token"
"""The cookie that held the token itself before sessions: deleted at login, never read."""

HOME_STUDIES = 15
HOME_ASSOCIATIONS = 8


def render(request: Request, template: str, status_code: int = 200, headers: dict | None = None,
           **context) -> HTMLResponse:
    state: AdminState = request.app.state.admin
    context.setdefault("notice", RESEARCH_NOTICE)
    context.setdefault("token_required", bool(state.settings.admin.token))
    context.setdefault("logged_in", bool(state.settings.admin.token)
                       and state.logins.valid(request.cookies.get(SESSION_COOKIE)))
    return TEMPLATES.TemplateResponse(request, template, context, status_code=status_code, headers=headers)


def home_context(state: AdminState, s: Session) -> dict:
    show = state.settings.admin.show_patient_identity
    return {
        "ready": readiness(state, s),
        "status": status_body(state, s),
        "studies": [study_summary(st, show) for st in studies_page(HOME_STUDIES, 0, session=s)],
        "studies_total": count_rows(Study, session=s),
        "associations": [association_out(a) for a in page(Association, HOME_ASSOCIATIONS, 0, session=s)],
        "show_identity": show,
    }


@pages.get("/", response_class=HTMLResponse)
def home(request: Request, state: AdminState = Depends(get_state), s: Session = Depends(get_session)):
    """Health and readiness, throughput and backlog, the recent studies (refreshed by htmx)."""
    return render(request, "home.html", **home_context(state, s))


@pages.get("/fragments/home", response_class=HTMLResponse)
def home_fragment(request: Request, state: AdminState = Depends(get_state), s: Session = Depends(get_session)):
    return render(request, "_home_live.html", **home_context(state, s))


@pages.get("/studies", response_class=HTMLResponse)
def studies(request: Request, offset: Offset = 0, state: AdminState = Depends(get_state),
            s: Session = Depends(get_session)):
    show = state.settings.admin.show_patient_identity
    items = [study_summary(st, show) for st in studies_page(50, offset, session=s)]
    return render(request, "studies.html", studies=items, offset=offset, limit=50,
                  total=count_rows(Study, session=s), show_identity=show)


@pages.get("/associations", response_class=HTMLResponse)
def associations(request: Request, offset: Offset = 0, s: Session = Depends(get_session)):
    items = [association_out(a) for a in page(Association, 100, offset, session=s)]
    return render(request, "associations.html", associations=items, offset=offset, limit=100,
                  total=count_rows(Association, session=s))


@pages.get("/studies/{study_uid}", response_class=HTMLResponse)
def study(request: Request, study_uid: Uid, state: AdminState = Depends(get_state),
          s: Session = Depends(get_session)):
    """Per run: keyframes with heat map and regions, histograms, TTA, opacification, probability; the SRs."""
    found = study_by_uid(study_uid, session=s)
    if found is None:
        return render(request, "error.html", status_code=404, message="No such study.")
    detail = study_detail(found, state.settings.admin.show_patient_identity)
    paths = {i.id: i.path for i in found.instances}
    histograms: dict[tuple[int, int], dict] = {}
    for run in detail.runs:
        if run.result is None:
            continue
        for k in run.result.keyframes:
            try:
                frame = pictures.load_frame(paths[run.instance_id], k.frame_number)
                histograms[(run.instance_id, k.frame_number)] = pictures.histogram_stats(frame)
            except Exception as exc:  # a file gone missing: the page says so instead of failing
                log.warning("keyframe %d of instance id=%s unreadable: %s", k.frame_number, run.instance_id,
                            type(exc).__name__)
    settled = detail.study.finding not in ("analysing", "waiting") and detail.study.sr_state != "pending"
    return render(request, "study.html", study=detail, histograms=histograms, settled=settled,
                  show_identity=state.settings.admin.show_patient_identity)


@pages.get("/upload", response_class=HTMLResponse)
def upload_page(request: Request):
    return render(request, "upload.html")


def analyse_upload(data: bytes, state: AdminState) -> dict:
    """Analyse an uploaded file as ``POST /predict`` does, and draw the study page's pictures for it."""
    classifier = state.model.get()
    frames = frames_from_bytes(data, limits=Limits.of(state.settings))
    analysis = analyse_frames(frames, classifier.predict, classifier.info.threshold,
                              keyframes=state.settings.pipeline.keyframes)
    f = analysis.finding
    keyframes = []
    for k, idx in enumerate(analysis.keyframes):
        frame = pictures.DisplayFrame(frames.data[idx], frames.valid, frames.rows, frames.columns,
                                      frames.frame_numbers[idx])
        scores = [float(v) for v in analysis.window_scores[k]]
        best = max(range(len(scores)), key=scores.__getitem__)
        keyframes.append({
            "frame_number": frame.frame_number,
            "probability": f.frame_probabilities[k],
            "original": float(analysis.window_original[k][best]),
            "flipped": float(analysis.window_flipped[k][best]),
            "overlay": pictures.data_uri(pictures.keyframe_png(frame, scores, f.threshold, selected_regions(f))),
            "histogram": pictures.data_uri(pictures.histogram_png(frame)),
            "stats": pictures.histogram_stats(frame),
        })
    return {
        "finding": f,
        "frames": len(frames.data),
        "model": classifier.info,
        "keyframes": keyframes,
        "tta_picture": pictures.data_uri(pictures.tta_png(
            [k["frame_number"] for k in keyframes], [k["original"] for k in keyframes],
            [k["flipped"] for k in keyframes], f.threshold)),
        "opacification_picture": pictures.data_uri(pictures.opacification_png(
            [float(v) for v in analysis.opacification], f.frame_numbers)),
        "probability_picture": pictures.data_uri(pictures.probability_png(
            f.probability, f.threshold, f.frame_numbers, f.frame_probabilities)),
    }


@pages.post("/upload", response_class=HTMLResponse)
async def upload(request: Request, file: UploadFile = File(...), state: AdminState = Depends(get_state)):
    """Classify an uploaded PNG, JPEG or DICOM file and show the same pictures as a study's run."""
    try:
        result = await bounded_analysis(file, state, analyse_upload, state.upload_slots,
                                        state.settings.admin.upload_concurrency)
    except HTTPException as exc:
        return render(request, "_message.html", status_code=exc.status_code, kind="refused",
                      message=f"Cannot analyse this file: {exc.detail}")
    return render(request, "_upload_result.html", name=file.filename or "upload", **result)


def operations_context(state: AdminState, s: Session) -> dict:
    failed = newest(Delivery, 50, session=s, where=Delivery.state == DeliveryState.FAILED.value)
    return {
        "failed": failed,
        "runs": newest(RetrainRun, 10, session=s),
        "retrain_available": state.retrain is not None,
        "defaults": RetrainRequest(),
    }


@pages.get("/operations", response_class=HTMLResponse)
def operations(request: Request, state: AdminState = Depends(get_state), s: Session = Depends(get_session)):
    """Retry failed deliveries, start a retrain and watch it (forms need the admin token)."""
    return render(request, "operations.html", **operations_context(state, s))


@pages.get("/fragments/retrain", response_class=HTMLResponse)
def retrain_fragment(request: Request, state: AdminState = Depends(get_state), s: Session = Depends(get_session)):
    return render(request, "_retrain_runs.html", **operations_context(state, s))


# Forms: the same token rule as the API (require_token: Authorization header only), answered
# with a fragment the page shows in place.

@router.post("/operations/studies/{study_uid}/reanalyse", response_class=HTMLResponse,
             dependencies=[Depends(require_token)])
def reanalyse_form(request: Request, study_uid: Uid, s: Session = Depends(get_session)):
    found = study_by_uid(study_uid, session=s)
    if found is None:
        return render(request, "_message.html", status_code=404, kind="refused", message="No such study.")
    queued, busy = jobs.requeue_study(found, session=s)
    s.commit()
    if not queued:
        return render(request, "_message.html", status_code=409, kind="refused",
                      message="Every run of this study is already queued or being analysed.")
    return render(request, "_message.html", kind="done",
                  message=f"Re-analysis queued for {queued} run(s); a new SR will supersede the current one.")


@router.post("/operations/deliveries/{delivery_id}/retry", response_class=HTMLResponse,
             dependencies=[Depends(require_token)])
def retry_form(request: Request, delivery_id: DbId, s: Session = Depends(get_session)):
    if not outbox.retry(delivery_id, session=s):
        return render(request, "_message.html", status_code=409, kind="refused",
                      message="This delivery is not in state failed.")
    s.commit()
    return render(request, "_message.html", kind="done", message=f"Delivery {delivery_id} is back in the outbox.")


@router.post("/operations/retrain", response_class=HTMLResponse, dependencies=[Depends(require_token)])
def retrain_form(
    request: Request,
    epochs: int = Form(...),
    limit_train: int | None = Form(None),
    limit_val: int | None = Form(None),
    state: AdminState = Depends(get_state),
):
    if state.retrain is None:
        return render(request, "_message.html", status_code=503, kind="refused",
                      message="Retraining is not available in this process.")
    try:
        params = RetrainRequest(epochs=epochs, limit_train=limit_train, limit_val=limit_val)
    except ValidationError as exc:
        return render(request, "_message.html", status_code=422, kind="refused",
                      message="; ".join(e["msg"] for e in exc.errors()))
    try:
        run_id = state.retrain.start(params.model_dump(exclude_none=True))
    except RetrainBusy as exc:
        return render(request, "_message.html", status_code=409, kind="refused", message=str(exc))
    return render(request, "_message.html", kind="done", message=f"Retraining run {run_id} queued; progress below.")


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request):
    return render(request, "login.html")


@router.post("/login")
def login(request: Request, token: str = Form(..., max_length=4096), state: AdminState = Depends(get_state)):
    """Trade the token for a reading session (:class:`arcade_pacs.admin.auth.SessionStore`): a
    random id in an HttpOnly, SameSite=Strict cookie (Secure over HTTPS) that expires after
    ``admin.session_hours``; it never authorises a change. Failed attempts are throttled per client."""
    expected = state.settings.admin.token
    if not expected:  # nothing to log in to: reading is open (on loopback only)
        return RedirectResponse("/ui/", status_code=303)
    client = client_address(request)
    try:
        state.throttle.check(client)
    except TooManyFailures as exc:
        return render(request, "login.html", status_code=429, headers={"Retry-After": str(exc.seconds)},
                      error=f"Too many failed attempts: try again in {exc.seconds} s.")
    if not secrets.compare_digest(token.encode(), expected.encode()):
        state.throttle.failed(client, "dashboard login")
        return render(request, "login.html", status_code=401, error="Wrong token.")
    state.throttle.succeeded(client)
    response = RedirectResponse("/ui/", status_code=303)
    response.set_cookie(SESSION_COOKIE, state.logins.issue(), max_age=int(state.logins.lifetime_s), path="/",
                        httponly=True, samesite="strict", secure=request.url.scheme == "https")
    response.delete_cookie(OLD_TOKEN_COOKIE, path="/")
    return response


@router.post("/logout")
def logout(request: Request, state: AdminState = Depends(get_state)):
    """End the reading session here and in the browser."""
    state.logins.revoke(request.cookies.get(SESSION_COOKIE))
    response = RedirectResponse("/ui/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict",
                           secure=request.url.scheme == "https")
    return response
