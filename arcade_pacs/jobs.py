"""Analysis jobs: a closed set of states and the only transitions between them.

::

    queued --claim--> running --complete--> done
       ^                 |
       +----retry--------+--fail (permanent, or attempts used up)--> failed
    (running jobs of a crashed worker are re-queued at start-up: recover_running)

A claim is one conditional UPDATE (``WHERE state = 'queued'``), so two workers, threads or
processes never run the same job. Retries and last errors are kept on the row for the admin.
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from arcade_pacs.db import queries
from arcade_pacs.db.tables import Instance, Job, utcnow
from arcade_pacs.phi import describe


class JobState(StrEnum):
    """Every state an analysis job can be in."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class PermanentError(Exception):
    """A job can never succeed on this input (e.g. undecodable pixel data); the message says why."""


RETRY_BACKOFF_S = (5.0, 30.0, 120.0)


def enqueue(instance: Instance, *, session: Session) -> Job:
    """Queue (or re-queue) the analysis of ``instance``."""
    job = instance.job
    if job is None:
        job = Job(instance=instance, state=JobState.QUEUED.value)
        session.add(job)
    else:
        job.state = JobState.QUEUED.value
        job.attempts = 0
        job.last_error = None
        job.available_at = utcnow()
        job.started_at = job.finished_at = None
    return job


def claim(worker: str, *, session: Session) -> Job | None:
    """Atomically take the oldest available queued job for ``worker``; ``None`` when there is none."""
    for _ in range(5):
        candidate = session.scalar(
            select(Job.id)
            .where(Job.state == JobState.QUEUED.value, Job.available_at <= utcnow())
            .order_by(Job.available_at, Job.id)
            .limit(1)
        )
        if candidate is None:
            return None
        taken = session.execute(
            update(Job)
            .where(Job.id == candidate, Job.state == JobState.QUEUED.value)
            .values(
                state=JobState.RUNNING.value,
                worker=worker,
                started_at=utcnow(),
                attempts=Job.attempts + 1,
            )
        ).rowcount
        session.commit()
        if taken:
            return session.get(Job, candidate, populate_existing=True)
    return None


def complete(job: Job) -> None:
    """Mark a running job done."""
    job.state = JobState.DONE.value
    job.finished_at = utcnow()
    job.last_error = None


def fail(job: Job, error: BaseException, max_attempts: int) -> JobState:
    """Record ``error`` on the job: re-queue it with back-off if it may pass, else mark it failed."""
    job.last_error = describe(error)  # shown by the admin and logged: no data values
    retry = not isinstance(error, PermanentError) and job.attempts < max_attempts
    if retry:
        delay = RETRY_BACKOFF_S[min(job.attempts, len(RETRY_BACKOFF_S)) - 1]
        job.state = JobState.QUEUED.value
        job.available_at = utcnow() + timedelta(seconds=delay)
    else:
        job.state = JobState.FAILED.value
        job.finished_at = utcnow()
    return JobState(job.state)


def recover_running(*, session: Session) -> int:
    """Re-queue jobs left ``running`` by a worker that stopped (call once at start-up)."""
    count = session.execute(
        update(Job)
        .where(Job.state == JobState.RUNNING.value)
        .values(state=JobState.QUEUED.value, available_at=utcnow(), worker=None)
    ).rowcount
    session.commit()
    return count


def counts_by_state(*, session: Session) -> dict[str, int]:
    """Number of jobs in each state (every state present, zero included)."""
    return queries.counts_by_state(Job.state, JobState, session=session)
