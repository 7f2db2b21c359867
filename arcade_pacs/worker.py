"""The analysis worker: claims jobs, runs the pipeline with the model loaded once, records results.

One worker thread per process is enough on a small CPU (TensorFlow already uses every core for
one batch); more processes can share a PostgreSQL database, since claims are atomic.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from arcade_pacs import jobs, metrics
from arcade_pacs.db.tables import FrameScore, Job, Result
from arcade_pacs.model.classifier import Classifier
from arcade_pacs.model.holder import ModelHolder
from arcade_pacs.pipeline.analyse import Analysis, analyse_source
from arcade_pacs.pipeline.frames import FrameError, FrameSource
from arcade_pacs.settings import Settings

log = logging.getLogger(__name__)


def analyse_file(path: str, classifier: Classifier, settings: Settings) -> Analysis:
    """Read a stored instance and analyse it; bad pixel data raises :class:`jobs.PermanentError`."""
    if not os.path.isfile(path):
        raise jobs.PermanentError(f"stored file missing: {path}")
    try:
        return analyse_source(
            FrameSource(path, max_frames=settings.pipeline.max_frames),
            classifier.predict,
            classifier.info.threshold,
            keyframes=settings.pipeline.keyframes,
        )
    except FrameError as exc:
        raise jobs.PermanentError(str(exc)) from exc


def record_result(job: Job, analysis: Analysis, classifier: Classifier, seconds: float, *, session: Session) -> Result:
    """Store (or replace) the instance's result with per-frame scores."""
    f = analysis.finding
    instance = job.instance
    if instance.result is not None:
        session.delete(instance.result)
        session.flush()
    result = Result(
        instance_id=instance.id,
        probability=f.probability,
        present=f.present,
        threshold=f.threshold,
        tta_original=f.tta_original,
        tta_flipped=f.tta_flipped,
        keyframes=f.frame_numbers,
        regions=[r.to_json() for r in f.regions],
        model_name=classifier.info.name,
        model_version=classifier.info.version,
        device_uid=classifier.info.device_uid,
        seconds=seconds,
    )
    key_rows = {idx: k for k, idx in enumerate(analysis.keyframes)}
    for idx, opac in enumerate(analysis.opacification):
        k = key_rows.get(idx)
        result.frames.append(
            FrameScore(
                frame_number=idx + 1,
                opacification=float(opac),
                probability=None if k is None else float(analysis.finding.frame_probabilities[k]),
                window_scores=None if k is None else [round(float(v), 5) for v in analysis.window_scores[k]],
            )
        )
    session.add(result)
    return result


def recover_running(sessions: sessionmaker[Session]) -> int:
    """Re-queue the jobs an earlier process left running (once per process, before any claim)."""
    with sessions() as session:
        recovered = jobs.recover_running(session=session)
    if recovered:
        log.info("re-queued %d jobs left running by an earlier process", recovered)
    return recovered


class Worker:
    """Claims and runs analysis jobs until stopped."""

    def __init__(self, settings: Settings, sessions: sessionmaker[Session], model: ModelHolder,
                 index: int = 0, on_done: Callable[[], None] | None = None, recover: bool = True):
        self.settings = settings
        self.sessions = sessions
        self.model = model
        self.name = f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}:{index}"
        self.on_done = on_done  # told after each job is recorded (the dispatcher wakes)
        self.recover = recover  # re-queue jobs left running at start (one worker of a process only)
        self.wake = threading.Event()
        self.stopping = threading.Event()

    def run_once(self) -> bool:
        """Run one job if one is available; return whether one ran."""
        with self.sessions() as session:
            job = jobs.claim(self.name, session=session)
            if job is None:
                return False
            classifier = self.model.get()
            started = time.perf_counter()
            try:
                analysis = analyse_file(job.instance.path, classifier, self.settings)
                record_result(job, analysis, classifier, time.perf_counter() - started, session=session)
                jobs.complete(job)
                session.commit()
                metrics.ANALYSIS_SECONDS.observe(time.perf_counter() - started)
                metrics.JOB_OUTCOMES.labels(outcome="done").inc()
                log.info("job id=%s done in %.1fs", job.id, time.perf_counter() - started)
            except Exception as exc:
                session.rollback()
                job = session.get(Job, job.id)
                state = jobs.fail(job, exc, self.settings.pipeline.max_attempts)
                session.commit()
                metrics.JOB_OUTCOMES.labels(outcome=state.value).inc()
                log.warning("job id=%s %s: %s", job.id, state.value, job.last_error)
        if self.on_done is not None:
            self.on_done()
        return True

    def run(self) -> None:
        """Loop until :meth:`stop`; sleeps on ``wake`` between polls."""
        if self.recover:
            recover_running(self.sessions)
        while not self.stopping.is_set():
            try:
                ran = self.run_once()
            except Exception:  # database briefly unavailable: keep the worker alive
                log.exception("worker loop error")
                ran = False
            if not ran:
                self.wake.wait(self.settings.pipeline.poll_interval_s)
                self.wake.clear()

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()
