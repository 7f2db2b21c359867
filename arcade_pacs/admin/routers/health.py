"""Is it alive, what does it hold, what does Prometheus scrape: ``/health``, ``/status``, ``/metrics``."""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response
from sqlalchemy import text
from sqlalchemy.orm import Session

from arcade_pacs import __version__, jobs, metrics
from arcade_pacs.admin.deps import RESEARCH_NOTICE, AdminState, get_session, get_state
from arcade_pacs.admin.schemas import Health, ModelSummary, ScpSummary, Status
from arcade_pacs.db.queries import count_rows
from arcade_pacs.db.tables import Instance, Report, Result
from arcade_pacs.send import outbox

router = APIRouter(tags=["health"])


def model_summary(state: AdminState) -> ModelSummary:
    """What the serving model is (name, version, Device UID, threshold)."""
    classifier = state.model.get()
    info = classifier.info
    return ModelSummary(name=info.name, version=info.version, device_uid=info.device_uid, threshold=info.threshold,
                        engine=classifier.engine_name)


@router.get("/health", response_model=Health, responses={503: {"model": Health}})
def health(state: AdminState = Depends(get_state), s: Session = Depends(get_session)):
    """Liveness and readiness: the database answers and a model is loaded."""
    try:
        s.execute(text("SELECT 1"))
        database = "ok"
    except Exception as exc:  # pragma: no cover - depends on an outage
        database = f"error: {type(exc).__name__}"
    body = Health(
        status="ok" if database == "ok" else "degraded",
        model_loaded=state.model.get() is not None,
        database=database,
        version=__version__,
        notice=RESEARCH_NOTICE,
    )
    return JSONResponse(body.model_dump(), status_code=200 if database == "ok" else 503)


@router.get("/status", response_model=Status)
def status(state: AdminState = Depends(get_state), s: Session = Depends(get_session)):
    """Counts of everything the plugin holds, the model and the SCP's address."""
    return Status(
        instances_received=count_rows(Instance, session=s),
        results=count_rows(Result, session=s),
        reports=count_rows(Report, session=s),
        jobs=jobs.counts_by_state(session=s),
        deliveries=outbox.counts_by_state(session=s),
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
