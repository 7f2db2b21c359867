"""Every transfer syntax and SOP class a cath lab sends: received over the network, decoded right."""

import copy
import io

import numpy as np
import pydicom
import pytest
from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pynetdicom import AE
from sqlalchemy import select

from arcade_pacs.bench.peers import run, tool
from arcade_pacs.db.tables import Instance, Job
from arcade_pacs.jobs.worker import Worker
from arcade_pacs.model.holder import ModelHolder
from arcade_pacs.pipeline.frames import decode_frames
from tests.dicom.test_scp import PROPOSE, SAMPLES, storescu
from tests.factory import real_frame, xa_dataset

pytestmark = [pytest.mark.network]


def send(port, ds):
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", port, ae_title="ARCADE")
    assert assoc.is_established
    status = assoc.send_c_store(ds).Status
    assoc.release()
    return status


@pytest.fixture(scope="module")
def reference(dicom_dir):
    ds = pydicom.dcmread(dicom_dir / "xa1_wg04_uncompressed_reference.dcm")
    return ds, ds.pixel_array


@pytest.mark.parametrize(
    "syntax, lossless",
    [
        (JPEGLSLossless, True),
        (JPEGLSNearLossless, False),
        (JPEG2000Lossless, True),
        (JPEG2000, False),
        (RLELossless, True),
        (DeflatedExplicitVRLittleEndian, True),
        (ImplicitVRLittleEndian, True),
    ],
)
def test_encodings_survive_the_network_and_decode(scp, reference, syntax, lossless):
    ds, pixels = reference
    ds = copy.deepcopy(ds)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    if syntax.is_compressed:
        kwargs = {"jls_error": 2} if syntax == JPEGLSNearLossless else {}
        if syntax == JPEG2000:
            kwargs = {"j2k_cr": [20]}
        ds.compress(syntax, **kwargs)
    else:  # re-encode through a file in the new syntax
        ds.file_meta.TransferSyntaxUID = syntax
        buffer = io.BytesIO()
        ds.save_as(buffer, implicit_vr=syntax.is_implicit_VR, little_endian=True)
        buffer.seek(0)
        ds = pydicom.dcmread(buffer)
    assert send(scp.port, ds) == 0
    with scp.sessions() as s:
        row = s.scalars(select(Instance).where(Instance.sop_instance_uid == ds.SOPInstanceUID)).one()
        assert row.transfer_syntax_uid == syntax
    stored = pydicom.dcmread(row.path)
    decoded = stored.pixel_array
    if lossless:
        np.testing.assert_array_equal(decoded, pixels)
    else:
        assert np.abs(decoded.astype(int) - pixels).mean() < 4  # 10-bit data, small lossy error
    frames = decode_frames(row.path)
    assert frames.data.shape == (1, 512, 512)


@pytest.mark.parametrize(
    "option, syntax, lossless",
    [
        ("+el", "1.2.840.10008.1.2.4.57", True),  # JPEG Lossless, Non-Hierarchical (Process 14), SV 6
        ("+ee", "1.2.840.10008.1.2.4.51", False),  # JPEG Extended (Process 2 & 4), 12-bit lossy
    ],
)
def test_dcmtk_jpeg_processes_survive_the_network_and_decode(scp, reference, dicom_dir, tmp_path, option, syntax, lossless):
    """Encoded by DCMTK's dcmcjpeg, as a modality would, not by the library that decodes them."""
    encoded = tmp_path / "encoded.dcm"
    out = run([tool("dcmcjpeg"), option, str(dicom_dir / "xa1_wg04_uncompressed_reference.dcm"), str(encoded)])
    assert out.returncode == 0, out.stdout + out.stderr
    ds = pydicom.dcmread(encoded)
    assert ds.file_meta.TransferSyntaxUID == syntax
    assert send(scp.port, ds) == 0
    with scp.sessions() as s:
        row = s.scalars(select(Instance).where(Instance.sop_instance_uid == ds.SOPInstanceUID)).one()
        assert row.transfer_syntax_uid == syntax
    decoded = pydicom.dcmread(row.path).pixel_array
    _, pixels = reference
    if lossless:
        np.testing.assert_array_equal(decoded, pixels)
    else:  # DCMTK stretches the 10-bit data to 12 bits: compare with its own decoder
        plain = tmp_path / "decoded.dcm"
        assert run([tool("dcmdjpeg"), str(encoded), str(plain)]).returncode == 0
        assert np.abs(decoded.astype(int) - pydicom.dcmread(plain).pixel_array).mean() < 1
    frames = decode_frames(row.path).data
    # Either way, the picture the model sees is the reference's (range scaling undoes the stretch).
    assert np.abs(frames - decode_frames(dicom_dir / "xa1_wg04_uncompressed_reference.dcm").data).mean() < 0.01


@pytest.mark.parametrize("modality, accepted", [("XA", True), ("OT", False)])
def test_secondary_capture_is_analysed_only_as_an_angiogram(scp, rubo, modality, accepted):
    ds = xa_dataset(real_frame(rubo, 50), sop_class="1.2.840.10008.5.1.4.1.1.7", Modality=modality,
                    ConversionType="WSD")
    status = send(scp.port, ds)
    assert status == (0x0000 if accepted else 0xC210)
    with scp.sessions() as s:
        assert len(s.scalars(select(Instance)).all()) == (1 if accepted else 0)


def test_enhanced_xa_multiframe_with_functional_groups(scp, rubo):
    from pydicom.dataset import Dataset

    ds = xa_dataset([real_frame(rubo, i) for i in (0, 30, 60)], sop_class="1.2.840.10008.5.1.4.1.1.12.1.1")
    transform = Dataset()
    transform.RescaleIntercept, transform.RescaleSlope, transform.RescaleType = 0, 1, "US"
    voi = Dataset()
    voi.WindowCenter, voi.WindowWidth = 128, 256
    shared = Dataset()
    shared.PixelValueTransformationSequence = [transform]
    shared.FrameVOILUTSequence = [voi]
    ds.SharedFunctionalGroupsSequence = [shared]
    assert send(scp.port, ds) == 0
    with scp.sessions() as s:
        row = s.scalars(select(Instance)).one()
        assert row.sop_class_uid == "1.2.840.10008.5.1.4.1.1.12.1.1"
    frames = decode_frames(row.path)
    assert frames.data.shape == (3, 512, 512)
    expected = np.clip((real_frame(rubo, 30) - 127.5) / 255 + 0.5, 0, 1)
    np.testing.assert_allclose(frames.data[1], expected, atol=1e-5)


def test_every_sample_file_is_analysed_from_receipt_to_scores(scp, dicom_dir, tiny_classifier):
    for name, syntax in SAMPLES.items():
        out = storescu(scp.port, dicom_dir / name, extra=[PROPOSE[syntax]])
        assert out.returncode == 0, out.stdout + out.stderr
    # Deflated on the wire too: storescu deflates the uncompressed RF image itself.
    out = storescu(scp.port, dicom_dir / "rf_siemens_karstenhilbert_uncompressed.dcm", extra=["-xd"])
    assert out.returncode == 0, out.stdout + out.stderr
    worker = Worker(scp.settings, scp.sessions, ModelHolder(tiny_classifier))
    while worker.run_once():
        pass
    with scp.sessions() as s:
        jobs = s.scalars(select(Job)).all()
        assert len(jobs) == len(SAMPLES), [j.last_error for j in jobs]
        assert all(j.state == "done" for j in jobs), [j.last_error for j in jobs]
        for inst in s.scalars(select(Instance)):
            assert inst.result is not None
            assert 0.0 <= inst.result.probability <= 1.0
            frames = int(pydicom.dcmread(inst.path, stop_before_pixels=True).get("NumberOfFrames", 1))
            assert len(inst.result.frames) == frames
        rf = s.scalars(select(Instance).where(Instance.sop_class_uid == "1.2.840.10008.5.1.4.1.1.12.2")).one()
        assert rf.transfer_syntax_uid == DeflatedExplicitVRLittleEndian


def test_the_sample_table_names_every_file_in_the_data_folder(dicom_dir):
    """A file added to the data folder must join the end-to-end test (with its transfer syntax)."""
    assert set(SAMPLES) == {p.name for p in dicom_dir.glob("*.dcm")}
