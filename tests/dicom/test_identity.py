"""Whose instance it is, over real associations (issue 18, findings 2-4): a Study Instance UID
shared by two patients, a SOP Instance UID resent in another study, native Pixel Data cut short.
Each refusal is a status a modality logs (with its reason), audited, counted in ``/status`` and
shown on the dashboard; no file is left behind or orphaned."""

import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from arcade_pacs.db.tables import Instance, Job, ReceiptConflict, Study
from arcade_pacs.receive.receipt import CONFLICTING_PATIENT, INSTANCE_OF_ANOTHER_STUDY, OUT_OF_RESOURCES
from tests.dicom.test_scp import storescu
from tests.factory import real_frame, xa_dataset
from tests.hostile import CANARIES

pytestmark = [pytest.mark.network]


def send(port, ds_or_path, sop_class=None, transfer_syntax=None):
    """C-STORE with pynetdicom; the whole response (status and Error Comment)."""
    from pynetdicom import AE, _config

    _config.STORE_SEND_CHUNKED_DATASET = not isinstance(ds_or_path, pydicom.Dataset)
    ae = AE(ae_title="MODALITY")
    if isinstance(ds_or_path, pydicom.Dataset):
        sop_class, transfer_syntax = ds_or_path.SOPClassUID, ds_or_path.file_meta.TransferSyntaxUID
    ae.add_requested_context(sop_class, transfer_syntax)
    assoc = ae.associate("127.0.0.1", port, ae_title="ARCADE")
    assert assoc.is_established
    try:
        return assoc.send_c_store(ds_or_path)
    finally:
        assoc.release()


def stored_files(root):
    return sorted(p for p in root.rglob("*.dcm") if ".incoming" not in p.parts)


def other_patient(ds):
    ds.PatientID, ds.PatientName = "OTHERPATIENT77", "COLLIDE^BOB"
    return ds


def admin(scp, classifier):
    from arcade_pacs.admin.app import AdminState, create_app
    from arcade_pacs.model.holder import ModelHolder

    return TestClient(create_app(AdminState(scp.settings, scp.sessions, ModelHolder(classifier))))


def test_two_patients_sharing_a_study_uid_never_share_the_study(scp, rubo, tmp_path, caplog, tiny_classifier):
    first = xa_dataset(real_frame(rubo, 10))
    assert send(scp.port, first).Status == 0x0000
    second = other_patient(xa_dataset(real_frame(rubo, 20), study_uid=first.StudyInstanceUID))
    second.PatientBirthDate = CANARIES[2]
    response = send(scp.port, second)
    assert response.Status == CONFLICTING_PATIENT == 0xA778
    assert "Patient ID differs" in response.ErrorComment
    # DCMTK's storescu, as a modality would, is told why (and says so).
    path = tmp_path / "second.dcm"
    second.SOPInstanceUID = pydicom.uid.generate_uid()
    second.save_as(path, enforce_file_format=True)
    out = storescu(scp.port, path, extra=["-d"])
    text = out.stdout + out.stderr
    assert "0xa778" in text.lower(), text
    assert "Patient ID differs" in text, text
    with scp.sessions() as s:
        (study,) = s.scalars(select(Study)).all()
        assert [i.sop_instance_uid for i in study.instances] == [first.SOPInstanceUID]
        conflicts = s.scalars(select(ReceiptConflict)).all()
        assert [(c.kind, c.study_id, c.calling_aet) for c in conflicts] == [
            ("patient", study.id, "MODALITY"), ("patient", study.id, "STORESCU")]
    assert len(stored_files(scp.settings.storage.root)) == 1  # nothing of the refused ones stays
    with admin(scp, tiny_classifier) as client:
        status = client.get("/status").json()
        assert status["refused_for_identity"] == {"patient": 2, "study": 0}
        assert any(e["source"] == "refused instance" and "Patient ID differs" in e["error"]
                   for e in status["last_errors"])
        home = client.get("/ui/").text
        assert 'id="refused-identity"' in home
        assert ">2 / 0<" in home
    leaked = [r.getMessage() for r in caplog.records if any(c in r.getMessage() for c in ("OTHERPATIENT77", "COLLIDE"))]
    assert not leaked


def test_a_known_sop_instance_uid_resent_in_another_study_is_refused_and_orphans_nothing(scp, rubo):
    first = xa_dataset(real_frame(rubo, 10))
    assert send(scp.port, first).Status == 0x0000
    moved = other_patient(xa_dataset(real_frame(rubo, 30)))  # another study, another patient, new content
    moved.SOPInstanceUID = first.SOPInstanceUID
    response = send(scp.port, moved)
    assert response.Status == INSTANCE_OF_ANOTHER_STUDY == 0xC409
    assert "already held in another study" in response.ErrorComment
    with scp.sessions() as s:
        (instance,) = s.scalars(select(Instance)).all()
        assert instance.study.study_instance_uid == first.StudyInstanceUID
        assert instance.generation == 1
        assert [c.kind for c in s.scalars(select(ReceiptConflict))] == ["study"]
        assert s.query(Study).count() == 1
        (path,) = stored_files(scp.settings.storage.root)
        assert str(path) == instance.path
    assert pydicom.dcmread(path).PixelData == first.PixelData  # the held file was not touched


def test_new_content_of_another_patient_under_a_known_uid_is_refused_and_the_file_kept(scp, rubo):
    first = xa_dataset(real_frame(rubo, 10))
    assert send(scp.port, first).Status == 0x0000
    changed = other_patient(xa_dataset(real_frame(rubo, 40), study_uid=first.StudyInstanceUID))
    changed.SeriesInstanceUID, changed.SOPInstanceUID = first.SeriesInstanceUID, first.SOPInstanceUID
    assert send(scp.port, changed).Status == CONFLICTING_PATIENT
    (path,) = stored_files(scp.settings.storage.root)
    assert pydicom.dcmread(path).PixelData == first.PixelData


def test_new_content_in_another_series_keeps_its_study_and_leaves_no_orphan(scp, rubo):
    first = xa_dataset(real_frame(rubo, 10))
    assert send(scp.port, first).Status == 0x0000
    with scp.sessions() as s:
        old_path = s.scalars(select(Instance)).one().path
    again = xa_dataset(real_frame(rubo, 50), study_uid=first.StudyInstanceUID)  # same patient and study
    again.SOPInstanceUID = first.SOPInstanceUID  # a new series (the modality re-processed the run)
    assert send(scp.port, again).Status == 0x0000
    with scp.sessions() as s:
        (instance,) = s.scalars(select(Instance)).all()
        assert instance.generation == 2
        assert instance.series_instance_uid == again.SeriesInstanceUID
        assert s.scalars(select(Job)).one().state == "queued"
        new_path = instance.path
    assert new_path != old_path
    assert stored_files(scp.settings.storage.root) == [Path(new_path)]


def _truncated(ds) -> bytes:
    """A Part 10 file whose native Pixel Data keeps its declared length but loses its second half."""
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    data = buffer.getvalue()
    return data[: len(data) - len(ds.PixelData) // 2]


def test_truncated_native_pixel_data_is_refused_at_receipt_so_the_modality_resends(scp, rubo, tmp_path):
    ds = xa_dataset(np.stack([real_frame(rubo, i) for i in range(4)]))
    path = tmp_path / "truncated.dcm"
    path.write_bytes(_truncated(ds))
    response = send(scp.port, str(path), ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assert response.Status == OUT_OF_RESOURCES  # Refused: a modality sends it again
    assert "truncated" in response.ErrorComment
    with scp.sessions() as s:
        assert s.query(Instance).count() == 0
    assert stored_files(scp.settings.storage.root) == []
    assert send(scp.port, ds).Status == 0x0000  # the whole instance, resent, is stored
