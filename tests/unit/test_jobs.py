from datetime import timedelta

from arcade_pacs import jobs
from arcade_pacs.db.tables import Instance, Job, Study, utcnow
from arcade_pacs.jobs import JobState


def _instance(session, n=1):
    study = Study(study_instance_uid=f"1.2.3.{n}")
    inst = Instance(study=study, sop_instance_uid=f"1.2.4.{n}", sop_class_uid="1.2", series_instance_uid="1.3",
                    transfer_syntax_uid="1.2.840.10008.1.2.1", path="/nowhere", size_bytes=1, calling_aet="T")
    session.add(inst)
    jobs.enqueue(inst, session=session)
    session.commit()
    return inst


def test_claim_complete(sessions):
    with sessions() as s:
        _instance(s)
        job = jobs.claim("w1", session=s)
        assert job.state == JobState.RUNNING.value and job.attempts == 1 and job.worker == "w1"
        assert jobs.claim("w2", session=s) is None  # nothing else queued
        jobs.complete(job)
        s.commit()
        assert jobs.counts_by_state(session=s) == {"queued": 0, "running": 0, "done": 1, "failed": 0}


def test_two_claimers_never_get_the_same_job(sessions):
    with sessions() as s:
        _instance(s, 1)
        _instance(s, 2)
    with sessions() as a, sessions() as b:
        ja, jb = jobs.claim("a", session=a), jobs.claim("b", session=b)
        assert ja.id != jb.id
        assert jobs.claim("a", session=a) is None


def test_retry_with_backoff_then_fail(sessions):
    with sessions() as s:
        _instance(s)
        job = jobs.claim("w", session=s)
        assert jobs.fail(job, RuntimeError("db hiccup"), max_attempts=2) == JobState.QUEUED
        assert job.available_at > utcnow() and "db hiccup" in job.last_error
        s.commit()
        assert jobs.claim("w", session=s) is None  # not before its back-off
        job.available_at = utcnow() - timedelta(seconds=1)
        s.commit()
        job = jobs.claim("w", session=s)
        assert jobs.fail(job, RuntimeError("again"), max_attempts=2) == JobState.FAILED


def test_permanent_errors_fail_at_once_and_running_jobs_recover(sessions):
    with sessions() as s:
        _instance(s, 1)
        _instance(s, 2)
        job = jobs.claim("w", session=s)
        assert jobs.fail(job, jobs.PermanentError("colour image"), max_attempts=5) == JobState.FAILED
        s.commit()
        jobs.claim("w", session=s)  # left running by a "crashed" worker
        assert jobs.recover_running(session=s) == 1
        assert jobs.counts_by_state(session=s)["queued"] == 1
        assert s.query(Job).filter_by(state="failed").one().last_error.startswith("PermanentError: colour image")
