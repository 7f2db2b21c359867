"""Job states, claims with leases, fenced completion: on SQLite and PostgreSQL alike."""

import threading
from datetime import timedelta

import pytest
from sqlalchemy import update

from arcade_pacs import jobs
from arcade_pacs.db.tables import Instance, Job, Study, utcnow
from arcade_pacs.jobs import JobState
from tests.project import BOTH_DATABASES

pytestmark = pytest.mark.parametrize("database_url", BOTH_DATABASES, indirect=True)


def _instance(session, n=1):
    study = Study(study_instance_uid=f"1.2.3.{n}")
    inst = Instance(study=study, sop_instance_uid=f"1.2.4.{n}", sop_class_uid="1.2", series_instance_uid="1.3",
                    transfer_syntax_uid="1.2.840.10008.1.2.1", path="/nowhere", size_bytes=1, calling_aet="T")
    session.add(inst)
    jobs.enqueue(inst, session=session)
    session.commit()
    return inst


def _expire_lease(session, job_id):
    session.execute(update(Job).where(Job.id == job_id).values(lease_until=utcnow() - timedelta(seconds=1)))
    session.commit()


def test_claim_complete(sessions):
    with sessions() as s:
        _instance(s)
        job = jobs.claim_job("w1", session=s)
        assert job.state == JobState.RUNNING.value
        assert job.attempts == 1
        assert job.worker == "w1"
        assert job.lease_until > utcnow()
        assert job.generation == 1
        assert jobs.claim_job("w2", session=s) is None  # nothing else queued, and the lease is live
        assert not jobs.complete(job.id, "w2", session=s)  # not w2's to finish
        assert jobs.complete(job.id, "w1", session=s)
        s.commit()
        assert jobs.counts_by_state(session=s) == {"queued": 0, "running": 0, "done": 1, "failed": 0}


def test_two_claimers_never_get_the_same_job(sessions):
    with sessions() as s:
        _instance(s, 1)
        _instance(s, 2)
    with sessions() as a, sessions() as b:
        ja, jb = jobs.claim_job("a", session=a), jobs.claim_job("b", session=b)
        assert ja.id != jb.id
        assert jobs.claim_job("a", session=a) is None


def test_many_threads_claim_each_job_exactly_once(sessions):
    with sessions() as s:
        for n in range(20):
            _instance(s, n)
    taken: list[int] = []
    lock = threading.Lock()

    def claimer(name):
        with sessions() as s:
            while (job := jobs.claim_job(name, session=s)) is not None:
                with lock:
                    taken.append(job.id)

    threads = [threading.Thread(target=claimer, args=(f"t{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(taken) == sorted(set(taken))
    assert len(taken) == 20


def test_retry_with_backoff_then_fail(sessions):
    with sessions() as s:
        _instance(s)
        job = jobs.claim_job("w", session=s)
        assert jobs.fail(job.id, "w", RuntimeError("db hiccup"), max_attempts=2, session=s) == JobState.QUEUED
        s.commit()
        assert job.available_at > utcnow()
        assert "db hiccup" in job.last_error
        assert jobs.claim_job("w", session=s) is None  # not before its back-off
        job.available_at = utcnow() - timedelta(seconds=1)
        s.commit()
        job = jobs.claim_job("w", session=s)
        assert jobs.fail(job.id, "w", RuntimeError("again"), max_attempts=2, session=s) == JobState.FAILED


def test_permanent_errors_fail_at_once(sessions):
    with sessions() as s:
        _instance(s, 1)
        job = jobs.claim_job("w", session=s)
        assert jobs.fail(job.id, "w", jobs.PermanentError("colour image"), max_attempts=5, session=s) == JobState.FAILED
        s.commit()
        assert s.query(Job).filter_by(state="failed").one().last_error.startswith("PermanentError: colour image")


def test_a_live_lease_is_never_taken_over_and_a_heartbeat_keeps_it(sessions):
    with sessions() as s:
        _instance(s)
        job = jobs.claim_job("w1", session=s, lease_s=60)
        before = job.lease_until
        assert jobs.heartbeat(job.id, "w1", 120, session=s)
        s.refresh(job)
        assert job.lease_until > before
        assert not jobs.heartbeat(job.id, "intruder", 120, session=s)
        assert jobs.claim_job("w2", session=s) is None


def test_an_expired_lease_is_taken_over_as_an_attempt_and_the_old_worker_cannot_finish(sessions):
    with sessions() as s:
        _instance(s)
        job = jobs.claim_job("dead", session=s, max_attempts=3)
        _expire_lease(s, job.id)
        taken = jobs.claim_job("alive", session=s, max_attempts=3)
        assert taken.id == job.id
        assert taken.worker == "alive"
        assert taken.attempts == 2
        assert jobs.WORKER_DIED in taken.last_error
        assert not jobs.complete(job.id, "dead", session=s)  # fenced: the lease moved on
        assert jobs.fail(job.id, "dead", RuntimeError("late"), 3, session=s) is None
        assert jobs.complete(job.id, "alive", session=s)
        s.commit()


def test_a_job_that_kills_its_worker_max_attempts_times_fails_with_the_reason(sessions):
    with sessions() as s:
        _instance(s, 1)
        job_id = None
        for attempt in range(1, 4):
            job = jobs.claim_job(f"w{attempt}", session=s, max_attempts=3)
            assert job is not None
            assert job.attempts == attempt
            job_id = job.id
            _expire_lease(s, job.id)  # the worker died: no heartbeat
        assert jobs.claim_job("w4", session=s, max_attempts=3) is None
        job = s.get(Job, job_id, populate_existing=True)
        assert job.state == JobState.FAILED.value
        assert job.last_error.startswith(jobs.WORKER_DIED)
        other = _instance(s, 2)  # the rest goes on
        assert jobs.claim_job("w5", session=s, max_attempts=3).instance_id == other.id


def test_new_content_during_a_run_makes_the_old_run_record_nothing(sessions):
    with sessions() as s:
        inst = _instance(s)
        job = jobs.claim_job("w", session=s)
        inst = s.get(Instance, inst.id)
        inst.generation += 1  # what a resend with new content does
        jobs.enqueue(inst, session=s)
        s.commit()
        assert not jobs.complete(job.id, "w", session=s)
        s.rollback()
        again = jobs.claim_job("w", session=s)
        assert again.id == job.id
        assert again.generation == 2
        assert jobs.complete(job.id, "w", session=s)
        s.commit()


def test_a_worker_death_is_charged_only_to_a_job_that_ran_alone_and_the_innocent_keeps_its_attempts(sessions):
    """Two jobs ran side by side in one process (two analysis threads); the process died. Neither
    is charged; each is retried alone; the one that kills its worker alone fails after
    ``max_attempts`` such deaths, the other ends done on its first attempt."""
    with sessions() as s:
        poison, innocent = _instance(s, 1).job.id, _instance(s, 2).job.id
        a = jobs.claim_job("p:1", session=s, max_attempts=2, alone=False)
        b = jobs.claim_job("p:2", session=s, max_attempts=2, alone=False)
        assert (a.id, b.id) == (poison, innocent)
        assert not a.alone
        assert not b.alone
        later = _instance(s, 3).job.id
        _expire_lease(s, poison)  # the process died: both leases run out
        _expire_lease(s, innocent)
        assert jobs.suspects_waiting(2, session=s)
        assert jobs.worker_died_count(session=s) == 2  # GET /status
        # A thread beside others claims nothing while a suspect waits (its process drains),
        # even with a queued job due.
        assert jobs.claim_job("q:2", session=s, max_attempts=2, alone=False) is None
        retried = jobs.claim_job("q:1", session=s, max_attempts=2, alone=True)
        assert retried.id == poison
        assert retried.alone
        assert retried.attempts == 1  # not counted
        assert "retried alone, not counted" in retried.last_error
        _expire_lease(s, poison)  # it killed its worker again, alone this time: counted next
        retried = jobs.claim_job("r:1", session=s, max_attempts=2, alone=True)
        assert retried.id == poison
        assert retried.attempts == 2
        _expire_lease(s, poison)  # and again: attempts used up, alone
        taken = jobs.claim_job("t:1", session=s, max_attempts=2, alone=True)
        assert taken.id == innocent
        assert taken.alone
        assert taken.attempts == 1
        assert jobs.complete(innocent, "t:1", session=s)
        s.commit()
        assert not jobs.suspects_waiting(2, session=s)
        assert jobs.worker_died_count(session=s) == 0
        assert jobs.claim_job("u:2", session=s, max_attempts=2, alone=False).id == later
        rows = {j.id: (j.state, j.attempts) for j in s.query(Job)}
        assert rows == {poison: ("failed", 2), innocent: ("done", 1), later: ("running", 1)}
        failed = s.get(Job, poison)
        assert failed.last_error.startswith(jobs.WORKER_DIED)
        assert "alone" in failed.last_error


def test_a_job_on_its_last_attempt_is_not_failed_by_a_death_beside_it(sessions):
    with sessions() as s:
        job_id = _instance(s).job.id
        assert jobs.claim_job("p:1", session=s, max_attempts=1, alone=False).attempts == 1
        _expire_lease(s, job_id)
        taken = jobs.claim_job("q:1", session=s, max_attempts=1, alone=True)
        assert taken.id == job_id
        assert taken.state == JobState.RUNNING.value
        assert taken.attempts == 1
        _expire_lease(s, job_id)  # now it died alone, on its last attempt
        assert jobs.claim_job("r:1", session=s, max_attempts=1, alone=True) is None
        assert s.get(Job, job_id, populate_existing=True).state == JobState.FAILED.value
