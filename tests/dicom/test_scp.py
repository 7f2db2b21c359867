"""The SCP against real network peers: DCMTK's echoscu/storescu and a pynetdicom SCU."""

import pydicom
import pytest
from pynetdicom import AE
from sqlalchemy import select

from arcade_pacs.bench import peers
from arcade_pacs.db.tables import Instance, Job, Study
from arcade_pacs.jobs import JobState
from tests.factory import real_frame, xa_dataset

pytestmark = [pytest.mark.network]

SAMPLES = {
    "xa_rubo0002_cine96_jpegbaseline.dcm": "1.2.840.10008.1.2.4.50",
    "xa1_wg04_jpeglossless_sv1.dcm": "1.2.840.10008.1.2.4.70",
    "xa1_wg04_rle.dcm": "1.2.840.10008.1.2.5",
    "xa1_wg04_uncompressed_reference.dcm": "1.2.840.10008.1.2.1",
    "rf_siemens_karstenhilbert_uncompressed.dcm": "1.2.840.10008.1.2.1",
}
# storescu proposes uncompressed syntaxes unless told which compressed one to offer too.
PROPOSE = {
    "1.2.840.10008.1.2.4.50": "-xy",
    "1.2.840.10008.1.2.4.70": "-xs",
    "1.2.840.10008.1.2.5": "-xr",
    "1.2.840.10008.1.2.1": "-x=",
}


def echoscu(port, calling="STORESCU"):
    return peers.echoscu(port, calling=calling)


def storescu(port, *files, calling="STORESCU", extra=()):
    """storescu proposing only the files' own SOP classes (``-R``) and ``extra`` options."""
    return peers.storescu(port, *files, calling=calling, options=("-R", *extra))


def raw_file(tmp_path, ds, body: bytes | None = None, meta_sop_class: str | None = None) -> str:
    """A Part 10 file whose meta may disagree with its data set, or whose body is ``body``."""
    path = tmp_path / f"{ds.SOPInstanceUID}.dcm"
    ds.save_as(path, enforce_file_format=True)
    if meta_sop_class:  # rewrite the meta's copy only (the first occurrence, in group 0002)
        assert len(meta_sop_class) == len(ds.SOPClassUID)
        path.write_bytes(path.read_bytes().replace(ds.SOPClassUID.encode(), meta_sop_class.encode(), 1))
    if body is not None:
        raw = path.read_bytes()
        header_end = 132 + 12 + int.from_bytes(raw[140:144], "little")
        path.write_bytes(raw[:header_end] + body)
    return str(path)


def scu_store(port, ds, sop_class=None, transfer_syntax=None, calling="MODALITY"):
    """Send ``ds`` with pynetdicom; return the C-STORE status.

    A file path is streamed as it is on disk (its file meta picks the presentation context),
    so a test can send bytes no well-behaved SCU would.
    """
    from pynetdicom import _config

    _config.STORE_SEND_CHUNKED_DATASET = not isinstance(ds, pydicom.Dataset)
    ae = AE(ae_title=calling)
    if isinstance(ds, pydicom.Dataset):
        sop_class = sop_class or ds.SOPClassUID
        transfer_syntax = transfer_syntax or ds.file_meta.TransferSyntaxUID
    ae.add_requested_context(sop_class, transfer_syntax)
    assoc = ae.associate("127.0.0.1", port, ae_title="ARCADE")
    assert assoc.is_established
    try:
        response = assoc.send_c_store(ds)
        return int(response.Status)
    finally:
        assoc.release()


def test_echoscu_gets_success(scp):
    out = echoscu(scp.port)
    assert out.returncode == 0, out.stdout + out.stderr


def test_unknown_calling_ae_is_refused_at_association(scp):
    out = echoscu(scp.port, calling="INTRUDER")
    assert out.returncode != 0
    assert "Calling AE Title Not Recognized" in out.stdout + out.stderr


def test_storescu_stores_every_sample_in_its_own_transfer_syntax(scp, dicom_dir):
    files = [dicom_dir / name for name in SAMPLES]
    for name, syntax in SAMPLES.items():
        out = storescu(scp.port, dicom_dir / name, extra=[PROPOSE[syntax]])
        assert out.returncode == 0, out.stdout + out.stderr
    with scp.sessions() as s:
        rows = {i.sop_instance_uid: i for i in s.scalars(select(Instance))}
        jobs = s.scalars(select(Job)).all()
        assert len(jobs) == len(files)
        assert {j.state for j in jobs} == {JobState.QUEUED.value}
    for name, syntax in SAMPLES.items():
        original = pydicom.dcmread(dicom_dir / name)
        row = rows[original.SOPInstanceUID]
        assert row.transfer_syntax_uid == syntax  # accepted as sent, not transcoded
        stored = pydicom.dcmread(row.path)
        assert stored.PixelData == original.PixelData
        assert stored.file_meta.TransferSyntaxUID == syntax
        assert row.calling_aet == "STORESCU"


def test_a_resend_replaces_the_file_and_requeues_once(scp, rubo):
    assert storescu(scp.port, rubo, extra=["-xy"]).returncode == 0
    assert storescu(scp.port, rubo, extra=["-xy"]).returncode == 0
    with scp.sessions() as s:
        assert s.query(Instance).count() == 1
        assert s.query(Job).count() == 1
        assert s.query(Study).one().needs_report


def test_dataset_without_pixel_data_gets_a900(scp, rubo):
    ds = xa_dataset(real_frame(rubo, 0))
    del ds.PixelData
    assert scu_store(scp.port, ds) == 0xA900


def test_sop_class_mismatch_gets_a900(scp, rubo, tmp_path):
    rf = "1.2.840.10008.5.1.4.1.1.12.2"
    path = raw_file(tmp_path, xa_dataset(real_frame(rubo, 0)), meta_sop_class=rf)  # sent as RF, holds XA
    assert scu_store(scp.port, path, sop_class=rf, transfer_syntax="1.2.840.10008.1.2.1") == 0xA900


def test_colour_image_gets_c210(scp, rubo):
    ds = xa_dataset(real_frame(rubo, 0))
    ds.PhotometricInterpretation = "RGB"
    assert scu_store(scp.port, ds) == 0xC210


@pytest.mark.parametrize("defect", ["short", "extra_frame", "zero_frames"])
def test_native_pixel_data_that_disagrees_with_its_header_gets_a900(scp, rubo, defect):
    ds = xa_dataset([real_frame(rubo, i) for i in range(3)])
    if defect == "short":
        ds.PixelData = ds.PixelData[:-1000]
    elif defect == "extra_frame":
        ds.NumberOfFrames = 2
    else:
        ds.NumberOfFrames = 0
    assert scu_store(scp.port, ds) == 0xA900
    with scp.sessions() as s:
        assert s.query(Instance).count() == 0


def test_image_over_the_configured_limits_gets_a700(scp, rubo):
    scp.settings.pipeline.max_frames = 2
    ds = xa_dataset([real_frame(rubo, i) for i in range(3)])
    assert scu_store(scp.port, ds) == 0xA700


def test_not_dicom_gets_c210_and_the_scp_keeps_serving(scp, rubo, tmp_path):
    good = xa_dataset(real_frame(rubo, 0))
    assert scu_store(scp.port, good) == 0x0000
    # A Part 10 header announcing XA, followed by bytes that are not a data set.
    meta = xa_dataset(real_frame(rubo, 0))
    bad = raw_file(tmp_path, meta, body=b"\xff\xfe\x00this is not a DICOM data set" * 10)
    status = scu_store(scp.port, bad, sop_class=meta.SOPClassUID, transfer_syntax=meta.file_meta.TransferSyntaxUID)
    assert status == 0xC210
    # Still serving, and what was accepted before is intact.
    assert echoscu(scp.port).returncode == 0
    with scp.sessions() as s:
        (row,) = s.scalars(select(Instance)).all()
        assert pydicom.dcmread(row.path).SOPInstanceUID == good.SOPInstanceUID


def test_undecodable_transfer_syntax_is_refused_at_association(scp):
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context("1.2.840.10008.5.1.4.1.1.12.1", "1.2.840.10008.1.2.4.100")  # MPEG2
    ae.add_requested_context("1.2.840.10008.5.1.4.1.1.12.1", "1.2.840.10008.1.2.4.70")
    assoc = ae.associate("127.0.0.1", scp.port, ae_title="ARCADE")
    assert assoc.is_established
    accepted = {str(c.transfer_syntax[0]) for c in assoc.accepted_contexts}
    rejected = {str(c.transfer_syntax[0]) for c in assoc.rejected_contexts}
    assoc.release()
    assert accepted == {"1.2.840.10008.1.2.4.70"}
    assert rejected == {"1.2.840.10008.1.2.4.100"}


@pytest.mark.parametrize("study", ["same", "different"])
def test_instances_group_into_studies(scp, rubo, study):
    a = xa_dataset(real_frame(rubo, 0))
    b = xa_dataset(real_frame(rubo, 1), study_uid=a.StudyInstanceUID if study == "same" else None)
    assert scu_store(scp.port, a) == 0
    assert scu_store(scp.port, b) == 0
    with scp.sessions() as s:
        assert s.query(Study).count() == (1 if study == "same" else 2)
