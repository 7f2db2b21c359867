"""The analysis worker: claims jobs, runs the pipeline with the model loaded once, records results.

Each process runs ``pipeline.workers`` of these threads (2 by default) around one served model:
inference already uses every core for one batch, so a second thread pays off by decoding and
preparing the next instance's tensors while the first waits for the model (their requests meet
in the model's batcher). More processes can share a PostgreSQL database, since claims are atomic.
A job whose worker process died is retried alone in a process (:class:`Isolation`).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from arcade_pacs import jobs
from arcade_pacs.core import faults, metrics
from arcade_pacs.core.phi import describe
from arcade_pacs.db.tables import FrameScore, Job, Result
from arcade_pacs.model.classifier import Classifier
from arcade_pacs.model.holder import ModelHolder
from arcade_pacs.pipeline.analyse import Analysis, analyse_source
from arcade_pacs.pipeline.frames import FrameError, FrameSource
from arcade_pacs.pipeline.part10 import Limits
from arcade_pacs.settings import Settings

log = logging.getLogger(__name__)


def analyse_file(path: str, classifier: Classifier, settings: Settings) -> Analysis:
    """Read a stored instance and analyse it; bad pixel data raises :class:`jobs.PermanentError`."""
    if not os.path.isfile(path):
        raise jobs.PermanentError(f"stored file missing: {path}")
    try:
        return analyse_source(
            FrameSource(path, limits=Limits.of(settings)),
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
    rounded = lambda values: [round(float(v), 5) for v in values]  # noqa: E731
    for idx, opac in enumerate(analysis.opacification):
        k = key_rows.get(idx)
        result.frames.append(
            FrameScore(
                frame_number=idx + 1,
                opacification=float(opac),
                probability=None if k is None else float(analysis.finding.frame_probabilities[k]),
                window_scores=None if k is None else rounded(analysis.window_scores[k]),
                window_original=None if k is None else rounded(analysis.window_original[k]),
                window_flipped=None if k is None else rounded(analysis.window_flipped[k]),
            )
        )
    session.add(result)
    return result


class Heartbeat:
    """Renews the lease of the job a worker is running, from its own thread, every ``lease_s / 4``.

    The analysis itself may hold the GIL in long numpy/TensorFlow calls, but those release it
    often; a worker that stops renewing (killed, stuck) loses the job to another after the lease.
    """

    def __init__(self, sessions: sessionmaker[Session], worker: str, lease_s: float):
        self.sessions = sessions
        self.worker = worker
        self.lease_s = lease_s
        self._job_id: int | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
        self._thread.start()

    def hold(self, job_id: int | None) -> None:
        """Renew ``job_id`` from now on (``None``: nothing held)."""
        with self._lock:
            self._job_id = job_id

    def _run(self) -> None:
        while not self._stopping.wait(self.lease_s / 4):
            with self._lock:
                job_id = self._job_id
            if job_id is None:
                continue
            try:
                with self.sessions() as session:
                    if not jobs.heartbeat(job_id, self.worker, self.lease_s, session=session):
                        log.warning("job id=%s: lease lost (taken over or re-queued); its result will be dropped", job_id)
            except Exception:  # database briefly unavailable: the next beat tries again
                log.exception("heartbeat of job id=%s failed", job_id)

    def stop(self) -> None:
        self._stopping.set()


class Isolation:
    """The analysis threads of one process, and whether one of them runs a job alone.

    A process that dies takes every job it was running with it, and which one killed it is
    unknown. So a job whose worker died is taken over only by a thread that runs it alone: one
    that claims while no sibling runs a job, and keeps the siblings from claiming until it
    ends. A death during that run has one suspect, the job, which is charged an attempt
    (:func:`arcade_pacs.jobs.claim_job`); the jobs that only shared a process with it are not. One
    ``Isolation`` is shared by all the :class:`Worker` threads of a process; a process with one
    thread runs every job alone.
    """

    def __init__(self, threads: int = 1):
        self.threads = threads
        self.lock = threading.Lock()  # held while claiming: the decision and the claim are one step
        self.running = 0  # jobs this process's threads run now
        self.alone = False  # one of them runs alone: the others claim nothing until it ends

    def may_claim_alone(self, suspects_waiting: Callable[[], bool]) -> bool:
        """With :attr:`lock` held and no run alone in progress: whether the next claim is alone.

        Only when no sibling runs a job; and with siblings, only when a job whose worker died
        waits (otherwise the siblings run side by side, as analysis is fastest).
        """
        return self.running == 0 and (self.threads == 1 or suspects_waiting())

    def started(self, alone: bool) -> None:
        """A claimed job starts (with :attr:`lock` held)."""
        self.running += 1
        self.alone = alone and self.threads > 1

    def ended(self) -> None:
        with self.lock:
            self.running -= 1
            self.alone = False


class Worker:
    """Claims and runs analysis jobs until stopped.

    ``isolation`` is shared by the workers of one process (:class:`Isolation`); by default each
    worker is its own process's only thread, so it runs every job alone.
    """

    def __init__(self, settings: Settings, sessions: sessionmaker[Session], model: ModelHolder,
                 model_path: Path | None = None, index: int = 0, on_done: Callable[[], None] | None = None,
                 load: Callable[[Path], Classifier] | None = None, isolation: Isolation | None = None):
        self.settings = settings
        self.isolation = isolation or Isolation()
        self.sessions = sessions
        self.model = model
        if model_path is not None:
            model.watch(model_path, load)  # a model promoted by another process is loaded before the next job
        # Unique per worker thread of a process: the name owns leases.
        self.name = f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}:{index}"[:64]
        self.on_done = on_done  # told after each job is recorded (the reporter wakes)
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.heartbeat = Heartbeat(sessions, self.name, settings.pipeline.lease_s)

    def run_once(self) -> bool:
        """Run one job if one is available; return whether one ran."""
        limits, isolation = self.settings.pipeline, self.isolation
        with isolation.lock:
            if isolation.alone:
                return False  # a sibling runs a job alone: claim nothing until it ends
            with self.sessions() as session:
                alone = isolation.may_claim_alone(
                    lambda: jobs.suspects_waiting(limits.max_attempts, session=session))
                job = jobs.claim_job(self.name, session=session, lease_s=limits.lease_s,
                                 max_attempts=limits.max_attempts, alone=alone)
                if job is None:
                    return False
                job_id, path, sop_uid = job.id, job.instance.path, job.instance.sop_instance_uid
                suspect, attempts = (job.last_error or "").startswith(jobs.WORKER_DIED), job.attempts
            isolation.started(alone)
        if alone and suspect:
            log.warning("job id=%s: its worker process died while running it; retried alone (attempt %d of %d)",
                        job_id, attempts, limits.max_attempts)
        self.heartbeat.hold(job_id)
        try:
            self._run(job_id, path, sop_uid)
        finally:
            self.heartbeat.hold(None)
            isolation.ended()
        if self.on_done is not None:
            self.on_done()
        return True

    def _run(self, job_id: int, path: str, sop_uid: str) -> None:
        try:
            self.model.refresh()
        except Exception:  # a half-copied model: keep serving the loaded one, try again next job
            log.exception("reloading the model failed; the loaded one serves")
        classifier = self.model.get()
        started = time.perf_counter()
        try:
            analysis = analyse_file(path, classifier, self.settings)
            faults.point("analysis", sop_uid)
            with self.sessions() as session:
                job = session.get(Job, job_id)
                record_result(job, analysis, classifier, time.perf_counter() - started, session=session)
                if not jobs.complete(job_id, self.name, session=session):
                    session.rollback()
                    log.warning("job id=%s: no longer ours (lease lost or new content); result dropped", job_id)
                    return
                session.commit()
            metrics.ANALYSIS_SECONDS.observe(time.perf_counter() - started)
            metrics.JOB_SECONDS.labels(outcome="done").observe(time.perf_counter() - started)
            metrics.JOB_OUTCOMES.labels(outcome="done").inc()
            log.info("job id=%s done in %.1fs", job_id, time.perf_counter() - started)
        except Exception as exc:
            with self.sessions() as session:
                state = jobs.fail(job_id, self.name, exc, self.settings.pipeline.max_attempts, session=session)
                session.commit()
            if state is None:
                log.warning("job id=%s: failed after losing its lease: %s", job_id, type(exc).__name__)
                return
            metrics.JOB_SECONDS.labels(outcome=state.value).observe(time.perf_counter() - started)
            metrics.JOB_OUTCOMES.labels(outcome=state.value).inc()
            log.warning("job id=%s %s: %s", job_id, state.value, describe(exc)[:300])

    def run(self) -> None:
        """Loop until :meth:`stop`; sleeps on ``wake`` between polls.

        Nothing is re-queued at start: jobs left running by a dead worker are taken over by
        :func:`jobs.claim_job` once their lease runs out, alone (:class:`Isolation`); a takeover
        counts as an attempt only when the dead run was alone too.
        """
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
        self.heartbeat.stop()
