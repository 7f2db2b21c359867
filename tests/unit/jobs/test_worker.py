import pytest

from arcade_pacs.db.tables import FrameScore, Instance, Job, Result
from arcade_pacs.jobs import JobState
from arcade_pacs.jobs.worker import Worker
from arcade_pacs.model.holder import ModelHolder
from tests.factory import real_frame, xa_dataset
from tests.ingest import ingest
from tests.project import BOTH_DATABASES

pytestmark = pytest.mark.parametrize("database_url", BOTH_DATABASES, indirect=True)


def test_worker_analyses_a_real_cine_and_records_per_frame_scores(settings, sessions, tiny_classifier, rubo):
    instance_id = ingest(rubo, settings, sessions)
    worker = Worker(settings, sessions, ModelHolder(tiny_classifier))
    assert worker.run_once() is True
    assert worker.run_once() is False  # queue empty
    with sessions() as s:
        inst = s.get(Instance, instance_id)
        assert inst.job.state == JobState.DONE.value
        r = inst.result
        assert r.model_version == "tiny-1"
        assert len(r.keyframes) == settings.pipeline.keyframes
        assert 0 <= r.probability <= 1
        assert r.present == (r.probability >= r.threshold)
        frames = s.query(FrameScore).filter_by(result_id=r.id).order_by(FrameScore.frame_number).all()
        assert [f.frame_number for f in frames] == list(range(1, 97))
        scored = [f.frame_number for f in frames if f.probability is not None]
        assert scored == r.keyframes
        assert all(len(f.window_scores) == 9 for f in frames if f.probability is not None)


def test_undecodable_pixels_fail_the_job_with_a_reason_and_others_go_on(settings, sessions, tiny_classifier, rubo):
    bad = xa_dataset([real_frame(rubo, 0)] * 2)
    bad.PixelData = bad.PixelData[:1000]  # shorter than declared
    bad_id = ingest(bad, settings, sessions)
    good_id = ingest(xa_dataset(real_frame(rubo, 50)), settings, sessions)
    worker = Worker(settings, sessions, ModelHolder(tiny_classifier))
    while worker.run_once():
        pass
    with sessions() as s:
        bad_job = s.query(Job).filter_by(instance_id=bad_id).one()
        assert bad_job.state == JobState.FAILED.value
        assert bad_job.attempts == 1
        assert bad_job.last_error.startswith("PermanentError: pixel data")
        assert s.query(Job).filter_by(instance_id=good_id).one().state == JobState.DONE.value
        assert s.query(Result).count() == 1
        assert s.get(Instance, good_id).result is not None
        assert s.get(Instance, bad_id).result is None


def test_a_missing_file_fails_the_job_permanently(settings, sessions, tiny_classifier, rubo):
    instance_id = ingest(rubo, settings, sessions)
    with sessions() as s:
        stored = s.get(Instance, instance_id).path
    import os

    os.remove(stored)
    Worker(settings, sessions, ModelHolder(tiny_classifier)).run_once()
    with sessions() as s:
        job = s.query(Job).one()
        assert job.state == "failed"
        assert "stored file missing" in job.last_error


def test_a_model_swapped_mid_job_serves_the_next_job_and_the_running_one_finishes(settings, sessions, tiny_classifier, rubo):
    """Retraining promotes while a job runs: that job ends with the model it started with."""
    from arcade_pacs.model.classifier import Classifier, ModelInfo

    new = Classifier(tiny_classifier.model, ModelInfo(name="tiny", version="tiny-2", device_uid="1.2.3.4", threshold=0.5))
    holder = ModelHolder(tiny_classifier)

    class SwapsDuringPredict(Classifier):
        def predict(self, tensors):
            holder.swap(new)  # as RetrainManager's on_promote does, from another thread
            return tiny_classifier.predict(tensors)

    holder.swap(SwapsDuringPredict(tiny_classifier.model, tiny_classifier.info))
    first = ingest(xa_dataset(real_frame(rubo, 50)), settings, sessions)
    second = ingest(xa_dataset(real_frame(rubo, 60)), settings, sessions)
    worker = Worker(settings, sessions, holder)
    while worker.run_once():
        pass
    with sessions() as s:
        assert s.query(Job).filter(Job.state != JobState.DONE.value).count() == 0
        versions = {i: s.get(Instance, i).result.model_version for i in (first, second)}
    assert versions == {first: "tiny-1", second: "tiny-2"}


def test_the_heartbeat_renews_the_lease_while_a_job_runs(settings, sessions, tiny_classifier, rubo):
    """A job slower than its lease keeps it: nobody else can claim it while the worker lives."""
    import time

    from arcade_pacs import jobs
    from arcade_pacs.model.classifier import Classifier

    settings.pipeline.lease_s = 1.0
    seen = {}

    class Slow(Classifier):
        def predict(self, tensors):
            time.sleep(2.5)  # longer than the lease: only the heartbeat keeps the job ours
            with sessions() as s:
                seen["claimed_by_other"] = jobs.claim_job("intruder", session=s, lease_s=1.0) is not None
            return tiny_classifier.predict(tensors)

    ingest(xa_dataset(real_frame(rubo, 50)), settings, sessions)
    worker = Worker(settings, sessions, ModelHolder(Slow(tiny_classifier.model, tiny_classifier.info)))
    try:
        assert worker.run_once()
    finally:
        worker.heartbeat.stop()
    assert seen == {"claimed_by_other": False}
    with sessions() as s:
        job = s.query(Job).one()
        assert job.state == "done"
        assert job.attempts == 1


def test_two_workers_share_the_queue_and_the_batched_model_each_job_runs_once(settings, sessions, tiny_classifier, rubo):
    """Service runs `pipeline.workers` threads: one prepares while the other's windows are inferred."""
    import threading

    ids = [ingest(xa_dataset(real_frame(rubo, n)), settings, sessions) for n in (30, 45, 60, 75)]
    holder = ModelHolder(tiny_classifier)
    done = []
    workers = [Worker(settings, sessions, holder, index=i, on_done=lambda: done.append(1))
               for i in range(2)]
    assert workers[0].name != workers[1].name

    def drain(worker):
        while worker.run_once():
            pass

    threads = [threading.Thread(target=drain, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    with sessions() as s:
        jobs_ = s.query(Job).all()
        assert {j.state for j in jobs_} == {JobState.DONE.value}
        assert all(j.attempts == 1 for j in jobs_)
        assert all(s.get(Instance, i).result is not None for i in ids)
    assert len(done) == 4


class _ModelQuotingAValue:
    """A served model whose failure quotes a value of the data, as libraries' messages do
    (``could not convert string to float: 'Canary^Phi'``)."""

    def __init__(self, info):
        self.info = info

    def predict(self, tensors):
        raise ValueError("could not convert string to float: 'Canary^Phi'")


def test_a_failure_quoting_a_data_value_is_logged_and_stored_without_it(settings, sessions, tiny_classifier, rubo,
                                                                       caplog):
    ingest(xa_dataset(real_frame(rubo, 50)), settings, sessions)
    settings.pipeline.max_attempts = 1
    caplog.set_level("INFO", logger="arcade_pacs")
    Worker(settings, sessions, ModelHolder(_ModelQuotingAValue(tiny_classifier.info))).run_once()
    with sessions() as s:
        job = s.query(Job).one()
        assert job.state == "failed"
        assert job.last_error == "ValueError: could not convert string to float: '...'"
    lines = [r.getMessage() for r in caplog.records if r.name == "arcade_pacs.jobs.worker"]
    assert any("ValueError" in line for line in lines), lines
    assert not any("Canary" in line for line in lines), lines


def test_a_job_whose_worker_died_runs_alone_and_the_sibling_thread_waits(settings, sessions, tiny_classifier, rubo):
    """Two analysis threads of one process share an :class:`Isolation`: the job left by a dead
    process is taken by an idle thread, alone, and the sibling claims nothing until it ends."""
    import threading
    from datetime import timedelta

    from sqlalchemy import update

    from arcade_pacs import jobs
    from arcade_pacs.db.tables import utcnow
    from arcade_pacs.jobs.worker import Isolation
    from arcade_pacs.model.classifier import Classifier

    suspect = ingest(xa_dataset(real_frame(rubo, 50)), settings, sessions)
    other = ingest(xa_dataset(real_frame(rubo, 60)), settings, sessions)
    with sessions() as s:
        dead = jobs.claim_job("dead:1", session=s, alone=False)  # ran beside another job; its process died
        assert dead.instance_id == suspect
        s.execute(update(Job).where(Job.id == dead.id).values(lease_until=utcnow() - timedelta(seconds=1)))
        s.commit()
    inside, release = threading.Event(), threading.Event()

    class Held(Classifier):
        def predict(self, tensors):
            inside.set()
            assert release.wait(60)
            return tiny_classifier.predict(tensors)

    isolation = Isolation(threads=2)
    first = Worker(settings, sessions, ModelHolder(Held(tiny_classifier.model, tiny_classifier.info)), index=0,
                   isolation=isolation)
    second = Worker(settings, sessions, ModelHolder(tiny_classifier), index=1, isolation=isolation)
    ran = []
    thread = threading.Thread(target=lambda: ran.append(first.run_once()))
    try:
        thread.start()
        assert inside.wait(60)
        assert isolation.alone
        assert isolation.running == 1
        assert second.run_once() is False  # the queued job waits: the suspect runs alone
        with sessions() as s:
            assert s.query(Job).filter_by(instance_id=other).one().state == JobState.QUEUED.value
        release.set()
        thread.join(timeout=120)
        assert ran == [True]
        assert not isolation.alone
        assert isolation.running == 0
        assert second.run_once() is True  # nothing suspect left: side by side again
    finally:
        release.set()
        first.heartbeat.stop()
        second.heartbeat.stop()
    with sessions() as s:
        rows = {j.instance_id: (j.state, j.attempts, j.alone) for j in s.query(Job)}
    assert rows == {suspect: ("done", 1, True), other: ("done", 1, False)}
