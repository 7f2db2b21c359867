"""Is it alive, is it ready, what does it hold, what does Prometheus scrape.

``/`` and ``/health`` (liveness), ``/ready`` (readiness), ``/status``, ``/metrics``.
"""

from __future__ import annotations

import os
import tempfile
import time

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from sqlalchemy import text
from sqlalchemy.orm import Session

from arcade_pacs import __version__, jobs
from arcade_pacs.admin.deps import RESEARCH_NOTICE, AdminState, get_session, get_state
from arcade_pacs.admin.schemas import Check, ErrorOut, Health, ModelSummary, Ready, ScpSummary, Status
from arcade_pacs.core import metrics
from arcade_pacs.db.queries import count_rows, deliveries_by_destination, receipt_conflicts, recent_errors
from arcade_pacs.db.tables import Instance, Report, Result
from arcade_pacs.send import outbox
from arcade_pacs.store.files import disk_space, free_space_ok

router = APIRouter(tags=["health"])


def model_summary(state: AdminState) -> ModelSummary | None:
    """What the serving model is (name, version, Device UID, threshold, engine); ``None`` in an SCP process."""
    if state.model is None:
        return None
    classifier = state.model.get()
    info = classifier.info
    reason = state.model.describe()["reason"] if hasattr(state.model, "describe") else None
    return ModelSummary(name=info.name, version=info.version, device_uid=info.device_uid, threshold=info.threshold,
                        engine=classifier.engine_name, engine_reason=reason)


def database_state(s: Session) -> str:
    """``ok`` when the database answers a trivial query, else the error's type."""
    try:
        s.execute(text("SELECT 1"))
        return "ok"
    except Exception as exc:  # pragma: no cover - depends on an outage
        return f"error: {type(exc).__name__}"


def health_response(state: AdminState, s: Session) -> JSONResponse:
    """Liveness: the database answers (else 503). ``degraded`` (still 200) while an SR delivery
    has failed for good (it needs an operator: ``GET /deliveries``, ``POST .../retry``)."""
    database = database_state(s)
    failed = outbox.counts_by_state(session=s)[outbox.DeliveryState.FAILED.value] if database == "ok" else 0
    problems = [f"{failed} result deliveries failed"] if failed else []
    settings = state.settings.storage
    if settings.min_free_mb > 0 and not free_space_ok(settings.root, settings.min_free_mb):
        problems.append(f"storage: {disk_space(settings.root, settings.min_free_mb).reason}")
    body = Health(
        status="ok" if database == "ok" and not problems else "degraded",
        model_loaded=state.model is not None and state.model.get() is not None,
        database=database,
        deliveries_failed=failed,
        problems=problems,
        version=__version__,
        notice=RESEARCH_NOTICE,
    )
    return JSONResponse(body.model_dump(), status_code=200 if database == "ok" else 503)


@router.get("/", response_model=Health, responses={307: {"description": "a browser: go to the dashboard"}})
def root(request: Request, state: AdminState = Depends(get_state), s: Session = Depends(get_session)):
    """The original ARCADE service's health answer for API clients; browsers go to ``/ui/``.

    A client that accepts ``text/html`` (a browser) is redirected; any other client (the
    original's clients and Locust file) gets the health JSON with ``status`` and ``model_loaded``.
    """
    if "text/html" in request.headers.get("accept", ""):
        return RedirectResponse("/ui/", status_code=307)
    return health_response(state, s)


@router.get("/health", response_model=Health, responses={503: {"model": Health}})
def health(state: AdminState = Depends(get_state), s: Session = Depends(get_session)):
    """Liveness, cheap: the database answers and a model is loaded."""
    return health_response(state, s)


def storage_check(root, min_free_mb: float) -> Check:
    """The storage root is writable and above its free-space watermark (:func:`storage.disk_space`)."""
    try:
        os.makedirs(root, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=root, prefix=".ready-"):
            pass
        space = disk_space(root, min_free_mb)
    except OSError as exc:
        return Check(ok=False, detail=f"storage not writable: {exc.strerror or type(exc).__name__}")
    return Check(ok=space.ok, detail=space.reason)


def readiness(state: AdminState, s: Session) -> Ready:
    """Each readiness check with what it found, and the reasons when not ready."""
    classifier = state.model.get() if state.model is not None else None
    database = database_state(s)
    listening = state.scp_listening() if state.scp_listening is not None else None
    scp = state.settings.scp
    checks = {
        "model": Check(ok=state.model is None or classifier is not None, detail=(
            "no analysis in this process (its role)" if state.model is None
            else f"{classifier.info.version} loaded" if classifier is not None else "no model loaded")),
        "database": Check(ok=database == "ok", detail=database),
        "storage": storage_check(state.settings.storage.root, state.settings.storage.min_free_mb),
        "scp": Check(ok=listening is None or listening, detail=(
            f"listening on {scp.host}:{scp.port} as {scp.ae_title}" if listening
            else "no SCP runs in this process" if listening is None else f"not listening on port {scp.port}")),
    }
    reasons = [f"{name}: {c.detail}" for name, c in checks.items() if not c.ok]
    return Ready(status="not ready" if reasons else "ready", checks=checks, reasons=reasons)


@router.get("/ready", response_model=Ready, responses={503: {"model": Ready}})
def ready(state: AdminState = Depends(get_state), s: Session = Depends(get_session)):
    """Readiness: model loaded, database reachable, storage writable above its floor, SCP listening.

    503 with the reasons when any is not, so a load balancer or orchestrator stops sending work.
    """
    body = readiness(state, s)
    return JSONResponse(body.model_dump(), status_code=503 if body.reasons else 200)


@router.get("/status", response_model=Status)
def status(state: AdminState = Depends(get_state), s: Session = Depends(get_session)):
    """Counts of everything the plugin holds, backlog per destination, the last errors, the model and the SCP."""
    return status_body(state, s)


def status_body(state: AdminState, s: Session) -> Status:
    """The body of ``GET /status`` (the dashboard's home page shows the same)."""
    backlog = {d.name: {st.value: 0 for st in outbox.DeliveryState} for d in state.settings.destinations}
    for destination, counts in deliveries_by_destination(session=s).items():
        backlog.setdefault(destination, {st.value: 0 for st in outbox.DeliveryState}).update(counts)
    return Status(
        version=__version__,
        instances_received=count_rows(Instance, session=s),
        results=count_rows(Result, session=s),
        reports=count_rows(Report, session=s),
        reports_drawing=count_rows(Report, session=s, where=Report.derived_pending),
        jobs=jobs.counts_by_state(session=s),
        jobs_worker_died=jobs.worker_died_count(session=s),
        deliveries=outbox.counts_by_state(session=s),
        backlog=backlog,
        active_associations=None if state.active_associations is None else state.active_associations(),
        refused_for_identity=receipt_conflicts(session=s),
        last_errors=[ErrorOut(source=src, id=i, at=at, error=err) for src, i, at, err in recent_errors(10, session=s)],
        model=model_summary(state),
        scp=ScpSummary(ae_title=state.settings.scp.ae_title, port=state.settings.scp.port),
        destinations=[d.name for d in state.settings.destinations],
        uptime_s=round(time.time() - state.started_at, 1),
        notice=RESEARCH_NOTICE,
    )


@router.get("/metrics", response_class=Response)
def prometheus_metrics():
    """Prometheus metrics (text exposition format)."""
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)
