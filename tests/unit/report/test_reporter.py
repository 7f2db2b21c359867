import logging
from pathlib import Path

import highdicom as hd
import pydicom
import pytest
from sqlalchemy import select

from arcade_pacs.bench.peers import run, tool
from arcade_pacs.db.tables import Delivery, Instance, Job, Report, Result, ResultObject, Study, utcnow
from arcade_pacs.jobs.worker import Worker
from arcade_pacs.model.classifier import ModelInfo
from arcade_pacs.model.holder import ModelHolder
from arcade_pacs.report import codes
from arcade_pacs.report.reporter import (
    REPORT_BACKOFF_CAP_S,
    ready_studies,
    report_backoff_s,
    report_ready_studies,
)
from arcade_pacs.settings import Destination, ObjectKind
from tests.factory import real_frame, xa_dataset
from tests.ingest import ingest
from tests.project import BOTH_DATABASES

pytestmark = pytest.mark.parametrize("database_url", BOTH_DATABASES, indirect=True)


def _analyse_all(settings, sessions, classifier):
    worker = Worker(settings, sessions, ModelHolder(classifier))
    while worker.run_once():
        pass


def test_quiet_analysed_study_gets_one_sr_and_a_delivery_per_destination(settings, sessions, tiny_classifier, rubo):
    settings.destinations = [Destination(name="a", ae_title="A", host="127.0.0.1", port=1),
                             Destination(name="b", ae_title="B", host="127.0.0.1", port=2)]
    ingest(rubo, settings, sessions)
    with sessions() as s:
        assert ready_studies(0, session=s) == []  # its job has not run yet
    _analyse_all(settings, sessions, tiny_classifier)
    with sessions() as s:
        assert ready_studies(3600, session=s) == []  # not quiet for an hour
        assert report_ready_studies(settings, session=s) == 1
        assert report_ready_studies(settings, session=s) == 0  # reported once
        report = s.scalars(select(Report)).one()
        assert {d.destination for d in s.scalars(select(Delivery))} == {"a", "b"}
        sr = pydicom.dcmread(report.path)
        assert sr.StudyInstanceUID == pydicom.dcmread(rubo, stop_before_pixels=True).StudyInstanceUID


def test_a_late_instance_makes_a_replacement_sr_that_supersedes_unsent_deliveries(settings, sessions, tiny_classifier, rubo):
    settings.destinations = [Destination(name="a", ae_title="A", host="127.0.0.1", port=1)]
    first = xa_dataset(real_frame(rubo, 50))
    ingest(first, settings, sessions)
    _analyse_all(settings, sessions, tiny_classifier)
    with sessions() as s:
        report_ready_studies(settings, session=s)
    ingest(xa_dataset(real_frame(rubo, 60), study_uid=first.StudyInstanceUID), settings, sessions)
    _analyse_all(settings, sessions, tiny_classifier)
    with sessions() as s:
        assert report_ready_studies(settings, session=s) == 1
        old, new = s.scalars(select(Report).order_by(Report.id)).all()
        assert new.predecessor_id == old.id
        assert new.series_instance_uid == old.series_instance_uid
        assert new.n_instances == 2
        states = {d.report_id: d.state for d in s.scalars(select(Delivery))}
        assert states == {old.id: "superseded", new.id: "pending"}
        sr = pydicom.dcmread(new.path)
        assert sr.InstanceNumber == 2
        check = run([tool("dciodvfy"), new.path])
        assert not [line for line in (check.stdout + check.stderr).splitlines() if line.startswith("Error")]
        ref = sr.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
        assert ref.ReferencedSOPInstanceUID == old.sop_instance_uid


def _undecodable(rubo, study_uid=None):
    """An instance that passes receipt but whose pixel data cannot be decoded (its job fails)."""
    bad = xa_dataset([real_frame(rubo, 0)] * 2, study_uid=study_uid)
    bad.PixelData = bad.PixelData[:10]
    return bad


def _errors(path) -> list[str]:
    check = run([tool("dciodvfy"), str(path)])
    return [line for line in (check.stdout + check.stderr).splitlines() if line.startswith("Error")]


def _values(ds) -> set[str]:
    """Every text value of a dataset, nested sequences included."""
    return {str(e.value) for e in ds.iterall() if isinstance(e.value, str)}


def test_a_study_whose_only_run_failed_gets_an_sr_that_says_why(settings, sessions, tiny_classifier, rubo):
    ingest(_undecodable(rubo), settings, sessions)
    _analyse_all(settings, sessions, tiny_classifier)
    # No result names the model: the SR names the one that serves (here an int8 model, whose
    # identity differs from the configured file's sidecar), as the service passes it.
    served = ModelInfo(name="served model", version="lite0-served-int8", device_uid=pydicom.uid.generate_uid())
    with sessions() as s:
        job = s.scalars(select(Job)).one()
        assert job.state == "failed"
        assert job.last_error
        assert report_ready_studies(settings, session=s, serving=lambda: served) == 1
        assert not s.scalars(select(Study)).one().needs_report
        report = s.scalars(select(Report)).one()
        assert report.n_instances == 1
        assert not report.present
        path, reason = report.path, job.last_error
    assert not _errors(path)
    sr = hd.sr.srread(path)
    assert {served.version, served.device_uid} <= _values(sr)
    assert sr.CompletionFlag == "PARTIAL"
    assert sr.content.get_image_measurement_groups() == []  # no analysed run: nothing to summarise
    (group,) = sr.content.get_planar_roi_measurement_groups()
    assert group.get_qualitative_evaluations()[0].value == codes.NOT_EVALUATED
    (comment,) = hd.sr.utils.find_content_items(group[0], name=codes.COMMENT)
    assert comment.TextValue == f"not analysed: {' '.join(reason.split())}"


def test_a_study_with_a_good_and_a_failed_run_reports_both(settings, sessions, tiny_classifier, rubo):
    good = xa_dataset(real_frame(rubo, 50))
    ingest(good, settings, sessions)
    ingest(_undecodable(rubo, study_uid=good.StudyInstanceUID), settings, sessions)
    _analyse_all(settings, sessions, tiny_classifier)
    with sessions() as s:
        assert report_ready_studies(settings, session=s) == 1
        report = s.scalars(select(Report)).one()
        present = s.scalars(select(Instance).where(Instance.sop_instance_uid == good.SOPInstanceUID)).one().result.present
        assert report.n_instances == 2
        assert report.present == present
        path = report.path
    assert not _errors(path)
    sr = hd.sr.srread(path)
    assert sr.CompletionFlag == "PARTIAL"
    summary, run_group = sr.content.get_image_measurement_groups()
    assert summary.get_qualitative_evaluations()[0].value == (codes.PRESENT if present else codes.INDETERMINATE)
    assert run_group.source_images[0].referenced_sop_instance_uid == good.SOPInstanceUID
    failed = [g for g in sr.content.get_planar_roi_measurement_groups()
              if g.get_qualitative_evaluations()[0].value == codes.NOT_EVALUATED]
    assert len(failed) == 1


def test_an_invalid_patient_attribute_never_blocks_the_sr(settings, sessions, tiny_classifier, dicom_dir, caplog):
    """Patient's Sex '?' (a real RF sample) is copied empty, with a warning that names it and not its value."""
    source = dicom_dir / "rf_siemens_karstenhilbert_uncompressed.dcm"
    assert pydicom.dcmread(source, stop_before_pixels=True).PatientSex == "?"
    ingest(source, settings, sessions)
    _analyse_all(settings, sessions, tiny_classifier)
    with caplog.at_level(logging.WARNING, logger="arcade_pacs.report"), sessions() as s:
        assert report_ready_studies(settings, session=s) == 1
        path = s.scalars(select(Report)).one().path
    sr = pydicom.dcmread(path)
    assert sr.PatientSex == ""
    assert sr.PatientID == pydicom.dcmread(source, stop_before_pixels=True).PatientID
    (warning,) = [r for r in caplog.records if "PatientSex" in r.getMessage()]
    assert "?" not in warning.getMessage()
    assert not _errors(path)


def test_a_study_whose_sr_cannot_be_written_backs_off_and_remembers_why(settings, sessions, tiny_classifier, rubo):
    instance_id = ingest(xa_dataset(real_frame(rubo, 50)), settings, sessions)
    _analyse_all(settings, sessions, tiny_classifier)
    with sessions() as s:
        Path(s.get(Instance, instance_id).path).unlink()  # the header the SR needs is gone
        assert report_ready_studies(settings, session=s) == 0
        study = s.scalars(select(Study)).one()
        assert study.needs_report
        assert study.report_attempts == 1
        assert study.report_error.startswith("FileNotFoundError")
        assert study.report_due_at > utcnow()
        assert ready_studies(0, session=s) == []  # backing off: not tried again every second
        assert report_ready_studies(settings, session=s) == 0
        assert study.report_attempts == 1
    assert report_backoff_s(1) < report_backoff_s(2) < report_backoff_s(3) <= report_backoff_s(50) == REPORT_BACKOFF_CAP_S


def test_a_resend_with_the_same_content_changes_nothing_and_new_content_replaces_the_sr(
        settings, sessions, tiny_classifier, rubo):
    settings.destinations = [Destination(name="a", ae_title="A", host="127.0.0.1", port=1)]
    ds = xa_dataset(real_frame(rubo, 50))
    first_id = ingest(ds, settings, sessions)
    _analyse_all(settings, sessions, tiny_classifier)
    with sessions() as s:
        assert report_ready_studies(settings, session=s) == 1
    assert ingest(ds, settings, sessions) == first_id  # byte-identical resend
    with sessions() as s:
        inst = s.get(Instance, first_id)
        assert inst.generation == 1
        assert inst.job.state == "done"
        assert inst.job.attempts == 1
        assert not inst.study.needs_report
        assert report_ready_studies(settings, session=s) == 0
    ds.PixelData = xa_dataset(real_frame(rubo, 70)).PixelData  # same UIDs, new pixels
    assert ingest(ds, settings, sessions) == first_id
    with sessions() as s:
        inst = s.get(Instance, first_id)
        assert inst.generation == 2
        assert inst.job.state == "queued"
    _analyse_all(settings, sessions, tiny_classifier)
    with sessions() as s:
        assert report_ready_studies(settings, session=s) == 1
        old, new = s.scalars(select(Report).order_by(Report.id)).all()
        assert new.predecessor_id == old.id
        assert new.content_key != old.content_key
        ref = pydicom.dcmread(new.path).PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0]
        assert ref.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == old.sop_instance_uid


def test_a_study_is_reported_by_one_reporter_and_never_twice_for_the_same_content(settings, sessions, tiny_classifier, rubo):
    from arcade_pacs.report.reporter import claim_study, write_report

    ingest(xa_dataset(real_frame(rubo, 50)), settings, sessions)
    _analyse_all(settings, sessions, tiny_classifier)
    with sessions() as a, sessions() as b:
        study = claim_study("a", 0, 60, session=a)
        assert study is not None
        assert claim_study("b", 0, 60, session=b) is None  # a holds it
        assert write_report(study, settings, session=b, owner="b") is None  # b never held the claim
        assert write_report(study, settings, session=a, owner="a") is not None
    with sessions() as s:
        study = s.scalars(select(Study)).one()
        study.needs_report = True  # e.g. a flag left by a crash: the content is the same
        s.commit()
        assert report_ready_studies(settings, session=s) == 0
        assert s.query(Report).count() == 1
        assert not s.scalars(select(Study)).one().needs_report


SR, SC, GSPS = "1.2.840.10008.5.1.4.1.1.88.34", "1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.5.1.4.1.1.11.1"


def _objects(report) -> dict[str, list[ResultObject]]:
    found: dict[str, list[ResultObject]] = {}
    for o in report.objects:
        found.setdefault(o.kind, []).append(o)
    return found


def test_a_study_result_is_its_sr_result_images_and_presentation_states_sent_where_wanted(
        settings, sessions, tiny_classifier, rubo):
    settings.destinations = [
        Destination(name="plain", ae_title="A", host="127.0.0.1", port=1),  # the default: SR and result images
        Destination(name="viewer", ae_title="B", host="127.0.0.1", port=2, objects=[ObjectKind.GSPS]),
        Destination(name="all", ae_title="C", host="127.0.0.1", port=3, objects=["gsps", "sr", "sc"]),
    ]
    study_uid = pydicom.dcmread(rubo, stop_before_pixels=True).StudyInstanceUID
    run_id = ingest(rubo, settings, sessions)
    failed = xa_dataset(real_frame(rubo, 5), study_uid=study_uid)
    source = pydicom.dcmread(rubo, stop_before_pixels=True)
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex"):  # the same patient's run
        setattr(failed, keyword, source.get(keyword, ""))
    failed.SeriesNumber, failed.InstanceNumber = 7, 1
    failed_id = ingest(failed, settings, sessions)
    with sessions() as s:  # the second run's analysis failed for good
        job = s.get(Instance, failed_id).job
        job.state, job.last_error = "failed", "pixel data cannot be decoded: frame 1 is truncated"
        s.commit()
    _analyse_all(settings, sessions, tiny_classifier)
    with sessions() as s:
        assert report_ready_studies(settings, session=s) == 1
        report = s.scalars(select(Report)).one()
        objects = _objects(report)
        assert {k: len(v) for k, v in objects.items()} == {"sr": 1, "sc": 2, "gsps": 1}
        (sr,) = objects["sr"]
        assert sr.sop_instance_uid == report.sop_instance_uid
        assert sr.path == report.path
        assert sr.instance_id is None
        assert {o.instance_id for o in objects["sc"]} == {run_id, failed_id}
        assert [o.instance_id for o in objects["gsps"]] == [run_id]  # a run without a result has no marks
        for o in report.objects:
            ds = pydicom.dcmread(o.path)
            assert ds.SOPClassUID == o.sop_class_uid == {"sr": SR, "sc": SC, "gsps": GSPS}[o.kind]
            assert ds.SOPInstanceUID == o.sop_instance_uid
            assert ds.SeriesInstanceUID == o.series_instance_uid
            assert ds.StudyInstanceUID == study_uid
        assert [int(pydicom.dcmread(o.path).InstanceNumber) for o in objects["sc"]] == [1, 2]
        sent = {(d.destination, d.object.kind) for d in s.scalars(select(Delivery))}
        assert sent == {("plain", "sr"), ("plain", "sc"), ("viewer", "gsps"),
                        ("all", "sr"), ("all", "sc"), ("all", "gsps")}
        assert s.query(Delivery).count() == 3 + 1 + 4  # two result images (one per run)
        assert all(d.report_id == report.id and d.state == "pending" for d in s.scalars(select(Delivery)))


def test_a_new_version_replaces_the_sr_result_images_and_presentation_states_together(
        settings, sessions, tiny_classifier, rubo):
    settings.destinations = [Destination(name="a", ae_title="A", host="127.0.0.1", port=1, objects=["sr", "sc", "gsps"])]
    first = xa_dataset([real_frame(rubo, i) for i in (40, 50, 60)])
    ingest(first, settings, sessions)
    _analyse_all(settings, sessions, tiny_classifier)
    with sessions() as s:
        report_ready_studies(settings, session=s)
        (delivery,) = [d for d in s.scalars(select(Delivery)) if d.object.kind == "sc"]
        delivery.state = "failed"  # a failed delivery of the old version is superseded too
        s.commit()
    ingest(xa_dataset(real_frame(rubo, 70), study_uid=first.StudyInstanceUID), settings, sessions)
    _analyse_all(settings, sessions, tiny_classifier)
    with sessions() as s:
        assert report_ready_studies(settings, session=s) == 1
        old, new = s.scalars(select(Report).order_by(Report.id)).all()
        states = {(d.report_id, d.object.kind, d.state) for d in s.scalars(select(Delivery))}
        assert {(r, st) for r, _, st in states} == {(old.id, "superseded"), (new.id, "pending")}
        assert {k for r, k, _ in states if r == old.id} == {"sr", "sc", "gsps"}
        before, after = _objects(old), _objects(new)
        assert {k: len(v) for k, v in after.items()} == {"sr": 1, "sc": 2, "gsps": 2}  # two runs now
        for kind in ("sc", "gsps"):  # the same series, later instance numbers, saying which version they are
            assert {o.series_instance_uid for o in before[kind] + after[kind]} == {before[kind][0].series_instance_uid}
            numbers = [int(pydicom.dcmread(o.path).InstanceNumber) for o in before[kind] + after[kind]]
            assert numbers == [1, 2, 3]
        comments = pydicom.dcmread(after["sc"][0].path).ImageComments
        assert "Version 2" in comments
        assert "replaces the objects of version 1" in comments


def test_a_re_analysis_by_another_model_is_a_new_version_by_the_same_model_not(settings, sessions, tiny_classifier, rubo):
    settings.destinations = [Destination(name="a", ae_title="A", host="127.0.0.1", port=1)]
    ingest(xa_dataset(real_frame(rubo, 50)), settings, sessions)
    _analyse_all(settings, sessions, tiny_classifier)
    with sessions() as s:
        assert report_ready_studies(settings, session=s) == 1
        study = s.scalars(select(Study)).one()
        study.needs_report = True  # analysed again by the same model: nothing new to say
        s.commit()
        assert report_ready_studies(settings, session=s) == 0
        result = s.scalars(select(Result)).one()
        result.device_uid = pydicom.uid.generate_uid()  # ...by a promoted model: a new version
        result.model_version = "effb0-next"
        study.needs_report = True
        s.commit()
        assert report_ready_studies(settings, session=s) == 1
        old, new = s.scalars(select(Report).order_by(Report.id)).all()
        assert {d.state for d in old.deliveries} == {"superseded"}
        assert {d.state for d in new.deliveries} == {"pending"}
        (image,) = _objects(new)["sc"]
        assert "effb0-next" in str(pydicom.dcmread(image.path).ContributingEquipmentSequence[0].SoftwareVersions)


@pytest.mark.parametrize("kept", ["key kept", "no key (received before keys were kept)"])
def test_an_instance_of_another_patient_in_a_study_is_never_in_its_sr(settings, sessions, tiny_classifier, rubo, kept):
    """Issue 18: a Study Instance UID shared by two patients. Receipt refuses the second patient;
    a study that holds both anyway (received before the fix, or written around receipt) gets an
    SR of its own patient only."""
    first = xa_dataset(real_frame(rubo, 50))
    ingest(first, settings, sessions)
    other = xa_dataset(real_frame(rubo, 60), study_uid=first.StudyInstanceUID)
    other.PatientID, other.PatientName = "OTHERPATIENT77", "COLLIDE^BOB"
    ingest(other, settings, sessions)  # around receipt, as data held before the patient key
    if kept != "key kept":
        with sessions() as s:
            s.scalars(select(Study)).one().patient_key = None
            s.commit()
    _analyse_all(settings, sessions, tiny_classifier)
    with sessions() as s:
        assert report_ready_studies(settings, session=s) == 1
        report = s.scalars(select(Report)).one()
        assert report.n_instances == 1
        path = report.path
    sr = pydicom.dcmread(path)
    assert sr.PatientID == first.PatientID
    referenced = {ref.ReferencedSOPInstanceUID
                  for study in sr.CurrentRequestedProcedureEvidenceSequence
                  for series in study.ReferencedSeriesSequence for ref in series.ReferencedSOPSequence}
    assert referenced == {first.SOPInstanceUID}
    assert other.SOPInstanceUID.encode() not in Path(path).read_bytes()


def test_a_failed_sr_keeps_its_reason_without_data_values(settings, sessions, rubo):
    """``studies.report_error`` is shown by the open ``GET /status``: scrubbed like every log."""
    from arcade_pacs.report.reporter import _report_failed

    ingest(xa_dataset(real_frame(rubo, 50)), settings, sessions)
    with sessions() as s:
        study_id = s.scalars(select(Study)).one().id
        _report_failed(study_id, ValueError("Invalid value for VR PN: 'Canary^Phi'"), session=s)
        assert s.get(Study, study_id).report_error == "ValueError: Invalid value for VR PN: '...'"


def _kinds_queued(sessions) -> dict[int, list[str]]:
    """What another process would see committed: each report's queued object kinds."""
    with sessions() as other:
        queued: dict[int, list[str]] = {}
        for d in other.scalars(select(Delivery).order_by(Delivery.id)):
            queued.setdefault(d.report_id, []).append(d.object.kind)
        return queued


def test_the_sr_is_committed_and_queued_before_its_images_are_drawn(settings, sessions, tiny_classifier, rubo):
    settings.destinations = [Destination(name="a", ae_title="A", host="127.0.0.1", port=1, objects=["sr", "sc", "gsps"])]
    ingest(rubo, settings, sessions)
    _analyse_all(settings, sessions, tiny_classifier)
    seen = []

    def on_sr():  # the senders are woken here: what is committed at that moment
        with sessions() as other:
            (report,) = other.scalars(select(Report))
            seen.append((report.derived_pending, [o.kind for o in report.objects], _kinds_queued(sessions)))

    def on_derived():  # and again here
        seen.append(_kinds_queued(sessions))

    with sessions() as s:
        assert report_ready_studies(settings, session=s, on_sr=on_sr, on_derived=on_derived) == 1
        report = s.scalars(select(Report)).one()
        assert seen == [(True, ["sr"], {report.id: ["sr"]}), {report.id: ["sr", "sc", "gsps"]}]
        assert not report.derived_pending
        assert _kinds_queued(sessions) == {report.id: ["sr", "sc", "gsps"]}  # the SR's delivery first
        assert report_ready_studies(settings, session=s) == 0


def test_images_not_drawn_after_the_sr_are_drawn_by_the_next_claim_and_the_sr_stays_one(
        settings, sessions, tiny_classifier, rubo, monkeypatch):
    from arcade_pacs.report import reporter

    settings.destinations = [Destination(name="a", ae_title="A", host="127.0.0.1", port=1, objects=["sr", "sc", "gsps"])]
    ingest(rubo, settings, sessions)
    _analyse_all(settings, sessions, tiny_classifier)
    build_objects = reporter.build_objects

    def no_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(reporter, "build_objects", no_disk)
    with sessions() as s:
        assert report_ready_studies(settings, session=s) == 1  # the SR went out
        report = s.scalars(select(Report)).one()
        study = s.scalars(select(Study)).one()
        assert report.derived_pending and [o.kind for o in report.objects] == ["sr"]
        assert not study.needs_report and study.report_attempts == 1 and study.report_error.startswith("OSError")
        assert ready_studies(0, session=s) == []  # backing off like any failed report
    monkeypatch.setattr(reporter, "build_objects", build_objects)
    with sessions() as s:
        s.execute(Study.__table__.update().values(report_due_at=utcnow()))
        s.commit()
        assert [st.id for st in ready_studies(3600, session=s)] == [study.id]  # no quiet period to wait for
        woken = []  # the senders are woken for these images too, not left to their next poll
        assert report_ready_studies(settings, session=s, on_sr=lambda: woken.append("sr"),
                                    on_derived=lambda: woken.append("derived")) == 0  # no second SR
        assert woken == ["derived"]
        report = s.scalars(select(Report)).one()
        study = s.scalars(select(Study)).one()
        assert not report.derived_pending
        assert sorted(o.kind for o in report.objects) == ["gsps", "sc", "sr"]
        assert _kinds_queued(sessions) == {report.id: ["sr", "sc", "gsps"]}
        assert study.report_attempts == 0 and study.report_error is None
        assert pydicom.dcmread(_objects(report)["sc"][0].path).InstanceNumber == 1


def test_a_new_version_before_the_old_ones_images_were_drawn_draws_only_its_own(
        settings, sessions, tiny_classifier, rubo, monkeypatch):
    from arcade_pacs.report import reporter

    settings.destinations = [Destination(name="a", ae_title="A", host="127.0.0.1", port=1, objects=["sr", "sc", "gsps"])]
    first = xa_dataset(real_frame(rubo, 50))
    ingest(first, settings, sessions)
    _analyse_all(settings, sessions, tiny_classifier)
    with monkeypatch.context() as m:
        m.setattr(reporter, "build_objects", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("killed")))
        with sessions() as s:
            assert report_ready_studies(settings, session=s) == 1
    ingest(xa_dataset(real_frame(rubo, 60), study_uid=first.StudyInstanceUID), settings, sessions)
    _analyse_all(settings, sessions, tiny_classifier)
    with sessions() as s:
        s.execute(Study.__table__.update().values(report_due_at=None))
        s.commit()
        assert report_ready_studies(settings, session=s) == 1
        old, new = s.scalars(select(Report).order_by(Report.id)).all()
        assert not old.derived_pending and not new.derived_pending
        assert [o.kind for o in old.objects] == ["sr"]  # replaced before its images were made: never made
        assert {k: len(v) for k, v in _objects(new).items()} == {"sr": 1, "sc": 2, "gsps": 2}
        assert [int(pydicom.dcmread(o.path).InstanceNumber) for o in _objects(new)["sc"]] == [1, 2]
        assert "Version 2" in pydicom.dcmread(_objects(new)["sc"][0].path).ImageComments
