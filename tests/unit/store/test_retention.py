"""Retention (storage.keep_days): pixel data goes only once the study's newest SR was delivered."""

from datetime import timedelta

import pydicom
import pytest
from sqlalchemy import update

from arcade_pacs.db.tables import Delivery, Instance, Job, Report, ResultObject, Study, utcnow
from arcade_pacs.store.retention import purge_delivered
from tests.factory import real_frame, xa_dataset
from tests.ingest import ingest


def _reported(settings, sessions, rubo, delivery_states=("sent",), received_days_ago=10, needs_report=False):
    ds = xa_dataset([real_frame(rubo, i) for i in (10, 20)])
    instance_id = ingest(ds, settings, sessions)
    with sessions() as s:
        instance = s.get(Instance, instance_id)
        instance.received_at = utcnow() - timedelta(days=received_days_ago)
        instance.job.state = "done"
        study = instance.study
        study.needs_report = needs_report
        report = Report(study=study, sop_instance_uid=pydicom.uid.generate_uid(), series_instance_uid="1.2.3",
                        path="unused", present=False, n_instances=1, created_at=utcnow() - timedelta(days=1))
        s.add(report)
        sr = ResultObject(report=report, kind="sr", sop_class_uid="1.2.840.10008.5.1.4.1.1.88.34",
                          sop_instance_uid=report.sop_instance_uid, series_instance_uid="1.2.3", path="unused")
        for n, state in enumerate(delivery_states):
            s.add(Delivery(report=report, object=sr, destination=f"d{n}", state=state))
        s.commit()
        return instance_id, instance.path


def test_delivered_study_loses_its_pixels_but_keeps_its_header(settings, sessions, rubo):
    instance_id, path = _reported(settings, sessions, rubo)
    with sessions() as s:
        assert purge_delivered(7, session=s) == 1
        assert s.get(Instance, instance_id).purged_at is not None
    header = pydicom.dcmread(path)
    assert "PixelData" not in header
    assert header.StudyInstanceUID
    assert header.PatientID == "SYN001"  # what a later SR copies
    with sessions() as s:
        assert purge_delivered(7, session=s) == 0  # once


@pytest.mark.parametrize("case", ["off", "young", "pending", "failed", "needs_report", "job_running", "newer_than_sr"])
def test_nothing_is_purged_before_its_time(settings, sessions, rubo, case):
    states = {"pending": ("sent", "pending"), "failed": ("failed",)}.get(case, ("sent",))
    instance_id, path = _reported(settings, sessions, rubo, delivery_states=states,
                                  received_days_ago=3 if case == "young" else 10,
                                  needs_report=case == "needs_report")
    with sessions() as s:
        if case == "job_running":
            s.execute(update(Job).values(state="running"))
        if case == "newer_than_sr":  # arrived after the newest SR was written
            s.execute(update(Report).values(created_at=utcnow() - timedelta(days=20)))
        s.commit()
        assert purge_delivered(0 if case == "off" else 7, session=s) == 0
        assert s.get(Instance, instance_id).purged_at is None
    assert "PixelData" in pydicom.dcmread(path)


def test_a_study_without_destinations_counts_as_delivered(settings, sessions, rubo):
    _reported(settings, sessions, rubo, delivery_states=())
    with sessions() as s:
        assert purge_delivered(7, session=s) == 1


def test_a_resend_brings_the_pixels_back(settings, sessions, rubo):
    instance_id, path = _reported(settings, sessions, rubo)
    with sessions() as s:
        purge_delivered(7, session=s)
    ds = pydicom.dcmread(path)
    ds.PixelData = xa_dataset([real_frame(rubo, i) for i in (10, 20)]).PixelData
    ds["PixelData"].VR = "OB"
    ingest(ds, settings, sessions)
    with sessions() as s:
        assert s.get(Instance, instance_id).purged_at is None
        assert not s.query(Study).one().needs_report  # same content: pixels back, no new analysis or SR
    assert "PixelData" in pydicom.dcmread(path)
