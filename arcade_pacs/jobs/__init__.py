"""Analysis jobs: a closed set of states and the only transitions between them.

::

    queued --claim--> running --complete--> done
       ^                 |  \\
       +----retry--------+   +--fail (permanent, or attempts used up)--> failed
       |                 |
       +-- new content --+   running with an expired lease --reclaim, alone--> running
                             (an attempt only if the dead run was alone; alone and attempts
                             used up --> failed, "worker died during analysis")

A running job holds a lease that its worker's heartbeat renews (:func:`heartbeat`); only a
lease that ran out is taken over, by :func:`claim_job`. A worker process that dies takes every job
it was running with it, and which one killed it is unknown: a job that ran beside others is a
suspect, not a culprit. So a takeover counts as an attempt only when the dead run was *alone*
in its worker process (``Job.alone``); a job whose run was beside others is taken over without
charge, and only by a claimer that runs it alone (:class:`arcade_pacs.jobs.worker.Isolation`). A job
that kills its worker every time thus ends ``failed`` after ``max_attempts`` deaths while alone,
instead of crash-looping the service, and the innocent jobs that shared its process keep their
attempts. Claims are
:func:`arcade_pacs.db.claims.claim_rows` (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, a conditional
update on SQLite). Finishing is fenced: :func:`complete` and :func:`fail` change the row only
while the caller still owns the lease and the instance still has the generation the job
analysed, so a worker that lost its lease, or analysed content since replaced, records nothing.
Retries and last errors are kept on the row for the admin.
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum

from sqlalchemy import and_, case, func, literal, or_, select, update
from sqlalchemy.orm import Session

from arcade_pacs.core.phi import describe
from arcade_pacs.db import claims, queries
from arcade_pacs.db.notify import JOBS_CHANNEL, notify
from arcade_pacs.db.tables import Instance, Job, utcnow


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


def _died(now):
    """Running, and its lease ran out: its worker died (or stalled) during the run."""
    return and_(Job.state == JobState.RUNNING.value, Job.lease_until < now)


def _suspect(now, max_attempts: int):
    """A job whose worker died and that may be taken over: alone and attempts left, or not alone
    (a run beside others is retried alone whatever its attempts)."""
    return and_(_died(now), or_(Job.attempts < max_attempts, Job.alone.is_(False)))


def _expire_dead(max_attempts: int, *, session: Session) -> int:
    """Fail the jobs that killed their worker while alone in it, on every attempt."""
    now = utcnow()
    return session.execute(
        update(Job)
        .where(_died(now), Job.alone.is_(True), Job.attempts >= max_attempts)
        .values(
            state=JobState.FAILED.value,
            finished_at=now,
            lease_until=None,
            last_error=f"{WORKER_DIED} ({max_attempts} attempts alone in a worker process; "
                       "its worker stopped renewing the lease each time)",
        )
    ).rowcount


def suspects_waiting(max_attempts: int, *, session: Session) -> bool:
    """Whether a job whose worker died waits to be taken over (by a claimer that runs it alone)."""
    return session.scalar(select(Job.id).where(_suspect(utcnow(), max_attempts)).limit(1)) is not None


def worker_died_count(*, session: Session) -> int:
    """Running jobs whose lease ran out (their worker died or stalled): each waits to be taken
    over and run alone (``GET /status``)."""
    return session.scalar(select(func.count()).select_from(Job).where(_died(utcnow()))) or 0


def claim_job(worker: str, *, session: Session, lease_s: float = 60.0, max_attempts: int = 3,
          alone: bool = True) -> Job | None:
    """Take the oldest available job for ``worker`` with a lease; ``None`` when there is none.

    ``alone``: the caller runs this job with nothing else beside it in its process until it ends
    (a single analysis thread, or a thread that holds its siblings off). Such a claimer takes a
    job whose worker died first (running, lease expired), else a queued, due one; if its
    process dies during the run, the next takeover counts as an attempt. A claimer that is not
    alone takes only queued jobs, and none at all while a job whose worker died is waiting, so
    that its process drains and the suspect runs alone soon. Taking over a job whose dead run
    was not alone costs no attempt. Jobs whose worker died while alone on every attempt are
    failed first.
    """
    if _expire_dead(max_attempts, session=session):
        session.commit()
    now = utcnow()
    due = and_(Job.state == JobState.QUEUED.value, Job.available_at <= now)
    if alone:
        claimable = or_(_suspect(now, max_attempts), due)
    elif suspects_waiting(max_attempts, session=session):
        return None
    else:
        claimable = due
    taken_over = Job.state == JobState.RUNNING.value  # in UPDATE ... SET, the row's values before it
    taken = claims.claim_rows(
        Job,
        claimable,
        [case((taken_over, 0), else_=1), Job.available_at, Job.id],
        {
            "state": JobState.RUNNING.value,
            "worker": worker,
            "started_at": now,
            "lease_until": claims.lease_until(lease_s, now),
            "alone": alone,
            "attempts": Job.attempts + case((and_(taken_over, Job.alone.is_(False)), 0), else_=1),
            "last_error": case(
                (and_(taken_over, Job.alone.is_(False)),
                 literal(f"{WORKER_DIED} beside other jobs (lease expired; retried alone, not counted)")),
                (taken_over, literal(f"{WORKER_DIED} (lease expired; taken over)")),
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
