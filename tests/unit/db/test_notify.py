"""LISTEN/NOTIFY wake-ups on a real PostgreSQL: a committed job wakes a listener, a rolled-back one does not."""

import threading
import time

import pytest

from arcade_pacs import jobs
from arcade_pacs.db.notify import JOBS_CHANNEL, Listener
from arcade_pacs.db.tables import Instance, Study


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_committed_job_wakes_the_listener_and_a_rolled_back_one_does_not(database_url, sessions):
    woke = threading.Event()
    listener = Listener(database_url, JOBS_CHANNEL, woke.set).start()
    try:
        time.sleep(1.5)  # LISTEN is in place
        with sessions() as s:
            inst = Instance(study=Study(study_instance_uid="1.2.3"), sop_instance_uid="1.2.4", sop_class_uid="1.2",
                            series_instance_uid="1.3", transfer_syntax_uid="1.2", path="/x", size_bytes=1,
                            calling_aet="T")
            s.add(inst)
            jobs.enqueue(inst, session=s)
            s.rollback()
        assert not woke.wait(2.0)
        with sessions() as s:
            inst = Instance(study=Study(study_instance_uid="1.2.5"), sop_instance_uid="1.2.6", sop_class_uid="1.2",
                            series_instance_uid="1.3", transfer_syntax_uid="1.2", path="/x", size_bytes=1,
                            calling_aet="T")
            s.add(inst)
            jobs.enqueue(inst, session=s)
            s.commit()
        assert woke.wait(3.0)
    finally:
        listener.stop()
