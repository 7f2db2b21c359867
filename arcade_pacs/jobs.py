"""Analysis jobs: a closed set of states and the only transitions between them.

::

    queued --claim--> running --complete--> done
       ^                 |  \\
       +----retry--------+   +--fail (permanent, or attempts used up)--> failed
       |                 |
       +-- new content --+   running with an expired lease --reclaim (an attempt)--> running
                             ... attempts used up --> failed ("worker died during analysis")

A running job holds a lease that its worker's heartbeat renews (:func:`heartbeat`); only a
lease that ran out is taken over, by :func:`claim_job`, and the takeover counts as an attempt, so
a job that kills its worker every time (out of memory, a decoder crash) ends ``failed`` after
``max_attempts`` instead of crash-looping the service. Claims are
:func:`arcade_pacs.db.claims.claim_rows` (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, a conditional
update on SQLite). Finishing is fenced: :func:`complete` and :func:`fail` change the row only
while the caller still owns the lease and the instance still has the generation the job
analysed, so a worker that lost its lease, or analysed content since replaced, records nothing.
Retries and last errors are kept on the row for the admin.
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum

from sqlalchemy import and_, case, literal, or_, select, update
from sqlalchemy.orm import Session

from arcade_pacs.db import claims, queries
from arcade_pacs.db.notify import JOBS_CHANNEL, notify
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
WORKER_DIED = "worker died during analysis"


def enqueue(instance: Instance, *, session: Session) -> Job:
    """Queue (or re-queue, for new content) the analysis of ``instance``.

    A run in progress on older content keeps going but cannot record: its lease and
    generation no longer match (see :func:`complete`).
    """
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
        job.worker = None
        job.lease_until = None
    notify(JOBS_CHANNEL, session=session)  # idle workers wake when this commits (PostgreSQL)
    return job


def _expire_dead(max_attempts: int, *, session: Session) -> int:
    """Fail running jobs whose lease ran out and that already used every attempt."""
    now = utcnow()
    return session.execute(
        update(Job)
        .where(Job.state == JobState.RUNNING.value, Job.lease_until < now, Job.attempts >= max_attempts)
        .values(
            state=JobState.FAILED.value,
            finished_at=now,
            lease_until=None,
            last_error=f"{WORKER_DIED} ({max_attempts} attempts; the last worker stopped renewing its lease)",
        )
    ).rowcount


def claim_job(worker: str, *, session: Session, lease_s: float = 60.0, max_attempts: int = 3) -> Job | None:
    """Take the oldest available job for ``worker`` with a lease; ``None`` when there is none.

    Available: queued and due, or running with an expired lease (its worker died or stalled)
    and attempts left. Jobs whose worker died on every attempt are failed first.
    """
    if _expire_dead(max_attempts, session=session):
        session.commit()
    now = utcnow()
    claimable = or_(
        and_(Job.state == JobState.QUEUED.value, Job.available_at <= now),
        and_(Job.state == JobState.RUNNING.value, Job.lease_until < now, Job.attempts < max_attempts),
    )
    taken = claims.claim_rows(
        Job,
        claimable,
        [Job.available_at, Job.id],
        {
            "state": JobState.RUNNING.value,
            "worker": worker,
            "started_at": now,
            "lease_until": claims.lease_until(lease_s, now),
            "attempts": Job.attempts + 1,
            "last_error": case(
                (Job.state == JobState.RUNNING.value,
                 literal(f"{WORKER_DIED} (lease expired; taken over)")),
                else_=Job.last_error,
            ),
            "generation": select(Instance.generation).where(Instance.id == Job.instance_id).scalar_subquery(),
        },
        session=session,
    )
    if not taken:
        return None
    return session.get(Job, taken[0], populate_existing=True)


def heartbeat(job_id: int, worker: str, lease_s: float, *, session: Session) -> bool:
    """Renew ``worker``'s lease on a running job; False when it is no longer theirs."""
    return claims.renew(Job, job_id, Job.worker, worker, lease_s, session=session,
                        extra=Job.state == JobState.RUNNING.value)


def _owned(job_id: int, worker: str):
    """Still ours to finish: running, leased by ``worker``, and the instance not replaced since."""
    current = select(Instance.generation).where(Instance.id == Job.instance_id).scalar_subquery()
    return and_(Job.id == job_id, Job.state == JobState.RUNNING.value, Job.worker == worker,
                Job.generation == current)


def complete(job_id: int, worker: str, *, session: Session) -> bool:
    """Mark ``worker``'s running job done (not committed); False when it is no longer theirs."""
    return bool(
        session.execute(
            update(Job)
            .where(_owned(job_id, worker))
            .values(state=JobState.DONE.value, finished_at=utcnow(), last_error=None, lease_until=None)
        ).rowcount
    )


def fail(job_id: int, worker: str, error: BaseException, max_attempts: int, *, session: Session) -> JobState | None:
    """Record ``error`` on ``worker``'s job: re-queue it with back-off if it may pass, else fail it.

    Not committed; returns the new state, or ``None`` when the job is no longer ``worker``'s.
    """
    job = session.get(Job, job_id, populate_existing=True)
    if job is None:
        return None
    retry = not isinstance(error, PermanentError) and job.attempts < max_attempts
    now = utcnow()
    # Shown by the admin and logged: the reason without data values (no patient data).
    values = {"last_error": describe(error)[:2000], "lease_until": None}
    if retry:
        delay = RETRY_BACKOFF_S[min(job.attempts, len(RETRY_BACKOFF_S)) - 1]
        values |= {"state": JobState.QUEUED.value, "available_at": now + timedelta(seconds=delay)}
    else:
        values |= {"state": JobState.FAILED.value, "finished_at": now}
    changed = session.execute(update(Job).where(_owned(job_id, worker)).values(**values)).rowcount
    if not changed:
        return None
    session.refresh(job)
    return JobState(values["state"])


def counts_by_state(*, session: Session) -> dict[str, int]:
    """Number of jobs in each state (every state present, zero included)."""
    return queries.counts_by_state(Job.state, JobState, session=session)


def requeue_study(study, *, session: Session) -> tuple[int, int]:
    """Queue every instance of ``study`` for analysis again (an operator's re-analysis).

    A job still queued or running is left alone (its result will be fresh anyway). The study is
    marked as needing a report, so once the jobs are done the reporter writes a new SR that
    names the previous one as its predecessor. Returns ``(queued, busy)``.
    """
    queued = busy = 0
    for instance in study.instances:
        if instance.job is not None and instance.job.state in (JobState.QUEUED.value, JobState.RUNNING.value):
            busy += 1
            continue
        enqueue(instance, session=session)
        queued += 1
    if queued:
        study.needs_report = True
        study.report_attempts = 0
        study.report_error = None
        study.report_due_at = None
    return queued, busy
