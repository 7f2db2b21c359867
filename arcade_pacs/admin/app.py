"""The admin HTTP API (FastAPI): health, status, results, deliveries, metrics and ``/predict``.

The app factory receives the running service's resources explicitly (settings, session factory,
model holder); nothing is created per request. State-changing endpoints require the admin token
(``Authorization: Bearer <token>``) when ``admin.token`` is set.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from fastapi import Depends, FastAPI, File, Header, HTTPException, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, sessionmaker

from arcade_pacs import __version__, jobs
from arcade_pacs import metrics as metrics_module
from arcade_pacs.db.tables import Delivery, Instance, Job, Report, Result
from arcade_pacs.admin.pictures import render_keyframe
from arcade_pacs.model.retrain import RetrainManager
from arcade_pacs.pipeline.frames import FrameError
from arcade_pacs.pipeline.predict import predict_bytes
from arcade_pacs.send import outbox
from arcade_pacs.settings import Settings
from arcade_pacs.worker import ModelHolder

RESEARCH_NOTICE = "Research use only: not clinically validated; not for diagnostic use."
MAX_UPLOAD_BYTES = 512 * 1024 * 1024


@dataclass
class AdminState:
    """What the admin reads: the running service's resources."""

    settings: Settings
    sessions: sessionmaker[Session]
    model: ModelHolder
    retrain: RetrainManager | None = None
    started_at: float = field(default_factory=time.time)


class RetrainRequest(BaseModel):
    """Parameters of a retraining run (the defaults are `arcade-pacs train`'s)."""

    epochs: int = Field(8, ge=1, le=1000)
    steps_per_epoch: int = Field(120, ge=1)
    batch_size: int = Field(32, ge=2, le=256)
    seed: int = 0
    low_res: int = Field(160, ge=32, le=224)
    low_res_fraction: float = Field(0.6, ge=0, le=1)
    limit_train: int | None = Field(None, ge=1)
    limit_val: int | None = Field(None, ge=1)
    data_dir: str | None = None


def create_app(state: AdminState) -> FastAPI:
    """Build the admin app for a running service."""
    metrics_module.register_database(state.sessions)
    app = FastAPI(
        title="ARCADE PACS admin",
        version=__version__,
        description=f"Coronary stenosis detection PACS plugin. {RESEARCH_NOTICE}",
    )

    def session():
        with state.sessions() as s:
            yield s

    def require_token(authorization: str | None = Header(default=None)) -> None:
        token = state.settings.admin.token
        if token and authorization != f"Bearer {token}":
            raise HTTPException(status_code=401, detail="admin token required")

    def model_info() -> dict:
        info = state.model.get().info
        return {
            "name": info.name,
            "version": info.version,
            "device_uid": info.device_uid,
            "threshold": info.threshold,
        }

    @app.get("/health")
    def health(s: Session = Depends(session)):
        """Liveness and readiness: the database answers and a model is loaded."""
        try:
            s.execute(text("SELECT 1"))
            database = "ok"
        except Exception as exc:  # pragma: no cover - depends on an outage
            database = f"error: {type(exc).__name__}"
        body = {
            "status": "ok" if database == "ok" else "degraded",
            "model_loaded": state.model.get() is not None,
            "database": database,
            "version": __version__,
            "notice": RESEARCH_NOTICE,
        }
        return JSONResponse(body, status_code=200 if database == "ok" else 503)

    @app.get("/status")
    def status(s: Session = Depends(session)):
        """Counts of everything the plugin holds, the model and the SCP's address."""
        return {
            "instances_received": s.scalar(select(func.count()).select_from(Instance)),
            "results": s.scalar(select(func.count()).select_from(Result)),
            "reports": s.scalar(select(func.count()).select_from(Report)),
            "jobs": jobs.counts_by_state(session=s),
            "deliveries": outbox.counts_by_state(session=s),
            "model": model_info(),
            "scp": {"ae_title": state.settings.scp.ae_title, "port": state.settings.scp.port},
            "destinations": [d.name for d in state.settings.destinations],
            "uptime_s": round(time.time() - state.started_at, 1),
            "notice": RESEARCH_NOTICE,
        }

    @app.get("/results")
    def results(limit: int = 50, s: Session = Depends(session)):
        """The newest analysis results (no patient data: database ids and scores only)."""
        rows = s.scalars(select(Result).order_by(Result.id.desc()).limit(min(limit, 500)))
        return [_result_summary(r) for r in rows]

    @app.get("/results/{instance_id}")
    def result(instance_id: int, s: Session = Depends(session)):
        """One instance's result with its per-frame scores and job history."""
        instance = s.get(Instance, instance_id)
        if instance is None:
            raise HTTPException(404, "no such instance")
        job = instance.job
        body = {
            "instance_id": instance.id,
            "job": None if job is None else {
                "state": job.state, "attempts": job.attempts, "last_error": job.last_error,
            },
            "result": None,
        }
        if instance.result is not None:
            body["result"] = _result_summary(instance.result) | {
                "regions": instance.result.regions,
                "frames": [
                    {"frame_number": f.frame_number, "opacification": f.opacification,
                     "probability": f.probability, "window_scores": f.window_scores}
                    for f in instance.result.frames
                ],
            }
        return body

    @app.get("/results/{instance_id}/frames/{frame_number}.png", response_class=Response)
    def keyframe_picture(instance_id: int, frame_number: int, s: Session = Depends(session)):
        """A keyframe with the window scores the model gave it (explainability picture)."""
        instance = s.get(Instance, instance_id)
        if instance is None or instance.result is None:
            raise HTTPException(404, "no result for this instance")
        scored = {f.frame_number: f for f in instance.result.frames if f.window_scores is not None}
        if frame_number not in scored:
            raise HTTPException(404, f"frame {frame_number} is not a keyframe of this result")
        png = render_keyframe(instance.path, frame_number, scored[frame_number].window_scores,
                              instance.result.threshold)
        return Response(png, media_type="image/png")

    @app.get("/jobs")
    def job_list(state_filter: str | None = None, limit: int = 100, s: Session = Depends(session)):
        """Jobs, newest first, with attempts and the last error (why a job failed)."""
        q = select(Job).order_by(Job.id.desc()).limit(min(limit, 1000))
        if state_filter:
            q = q.where(Job.state == state_filter)
        return [
            {"id": j.id, "instance_id": j.instance_id, "state": j.state, "attempts": j.attempts,
             "last_error": j.last_error, "finished_at": j.finished_at}
            for j in s.scalars(q)
        ]

    @app.get("/deliveries")
    def deliveries(limit: int = 100, s: Session = Depends(session)):
        """SR deliveries, newest first, with the peer's last status."""
        rows = s.scalars(select(Delivery).order_by(Delivery.id.desc()).limit(min(limit, 1000)))
        return [
            {"id": d.id, "report_id": d.report_id, "destination": d.destination, "state": d.state,
             "attempts": d.attempts, "last_status": d.last_status, "last_error": d.last_error,
             "sent_at": d.sent_at}
            for d in rows
        ]

    @app.post("/deliveries/{delivery_id}/retry", dependencies=[Depends(require_token)])
    def retry_delivery(delivery_id: int, s: Session = Depends(session)):
        """Put a failed delivery back in the outbox."""
        if not outbox.retry(delivery_id, session=s):
            raise HTTPException(409, "delivery is not in state failed")
        s.commit()
        return {"id": delivery_id, "state": outbox.DeliveryState.PENDING.value}

    @app.post("/predict")
    async def predict(file: UploadFile = File(...)):
        """Classify one uploaded PNG, JPEG or DICOM file (the original ARCADE service's endpoint)."""
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

    @app.post("/retrain", status_code=202, dependencies=[Depends(require_token)])
    def retrain(request: RetrainRequest):
        """Start retraining in the background (one at a time); poll ``GET /retrain/{id}``."""
        if state.retrain is None:
            raise HTTPException(503, "retraining is not available in this process")
        params = request.model_dump(exclude_none=True)
        if "data_dir" not in params:
            params["data_dir"] = str(state.settings.data_dir / "arcade")
        try:
            run_id = state.retrain.start(params)
        except RuntimeError as exc:
            raise HTTPException(409, str(exc)) from exc
        return {"id": run_id, "state": "queued"}

    @app.get("/retrain/{run_id}")
    def retrain_status(run_id: int):
        """Progress and outcome of a retraining run."""
        if state.retrain is None:
            raise HTTPException(503, "retraining is not available in this process")
        body = state.retrain.get(run_id)
        if body is None:
            raise HTTPException(404, "no such retraining run")
        return body

    @app.get("/metrics")
    def metrics():
        """Prometheus metrics (text exposition format)."""
        body, content_type = metrics_module.render()
        return Response(body, media_type=content_type)

    return app


def _result_summary(r: Result) -> dict:
    return {
        "instance_id": r.instance_id,
        "probability": r.probability,
        "present": r.present,
        "threshold": r.threshold,
        "tta": {"original": r.tta_original, "flipped": r.tta_flipped},
        "keyframes": r.keyframes,
        "model_version": r.model_version,
        "seconds": r.seconds,
        "created_at": r.created_at,
    }
