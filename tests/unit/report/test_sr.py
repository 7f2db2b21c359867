"""The SR built from real XA headers: validated by dciodvfy, rendered by dsrdump, read back by highdicom."""

import io

import highdicom as hd
import pydicom
import pytest
from pydicom.uid import generate_uid

from arcade_pacs.findings import Finding, Region
from arcade_pacs.report import codes
from arcade_pacs.report.sr import InstanceResult, ModelIdentity, build_sr
from tests.helpers import run, tool

MODEL = ModelIdentity("ARCADE EfficientNetB0 stenosis classifier", "effb0-test-1", generate_uid())


def _results(dicom_dir):
    cine = pydicom.dcmread(dicom_dir / "xa_rubo0002_cine96_jpegbaseline.dcm", stop_before_pixels=True)
    single = pydicom.dcmread(dicom_dir / "xa1_wg04_rle.dcm", stop_before_pixels=True)
    single.StudyInstanceUID = cine.StudyInstanceUID  # one study, two runs
    positive = Finding(probability=0.83, threshold=0.4, frame_numbers=[40, 55, 56, 80],
                       frame_probabilities=[0.7, 0.91, 0.88, 0.7], tta_original=0.8, tta_flipped=0.86,
                       regions=[Region(55, (128.0, 0.0, 384.0, 256.0), 0.91)])
    negative = Finding(probability=0.12, threshold=0.4, frame_numbers=[1], frame_probabilities=[0.12],
                       tta_original=0.1, tta_flipped=0.14)
    return [
        InstanceResult(source=cine, finding=positive, model=MODEL),
        InstanceResult(source=single, finding=negative, model=MODEL),
    ]


@pytest.fixture
def sr_file(dicom_dir, tmp_path):
    sr = build_sr(_results(dicom_dir), model=MODEL, series_instance_uid=generate_uid(),
                  sop_instance_uid=generate_uid(), instance_number=1)
    path = tmp_path / "sr.dcm"
    sr.save_as(path, enforce_file_format=True)
    return path


def test_dciodvfy_reports_no_errors(sr_file):
    out = run([tool("dciodvfy"), str(sr_file)])
    text = out.stdout + out.stderr
    assert "Comprehensive3DSR" in text
    errors = [line for line in text.splitlines() if line.startswith("Error")]
    assert not errors, "\n".join(errors)


def test_dsrdump_renders_the_findings(sr_file):
    out = run([tool("dsrdump"), str(sr_file)])
    assert out.returncode == 0, out.stderr
    assert "Imaging Measurement Report" in out.stdout
    assert "Coronary angiography" in out.stdout
    assert '(52101004,SCT,"Present")' in out.stdout and '(272519000,SCT,"Absent")' in out.stdout
    assert "UNVERIFIED" in out.stdout


def test_values_round_trip_through_highdicom(sr_file, dicom_dir):
    ds = pydicom.dcmread(sr_file)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"
    assert ds.VerificationFlag == "UNVERIFIED" and ds.CompletionFlag == "COMPLETE"
    cine = pydicom.dcmread(dicom_dir / "xa_rubo0002_cine96_jpegbaseline.dcm", stop_before_pixels=True)
    assert ds.StudyInstanceUID == cine.StudyInstanceUID and ds.PatientID == cine.PatientID
    assert ds.SeriesInstanceUID != cine.SeriesInstanceUID
    assert "research" in ds.SeriesDescription.lower()
    equipment = ds.ContributingEquipmentSequence[0]
    assert equipment.PurposeOfReferenceCodeSequence[0].CodeValue == codes.PROCESSING_EQUIPMENT.value
    assert equipment.DeviceUID == MODEL.device_uid

    sr = hd.sr.srread(sr_file)
    report = sr.content
    groups = report.get_planar_roi_measurement_groups()
    image_groups = report.get_image_measurement_groups()
    summary, run_cine, run_single = image_groups
    assert summary.tracking_identifier == "Study summary"
    assert summary.get_qualitative_evaluations()[0].value == codes.PRESENT
    probabilities = [g.get_measurements(name=codes.PROBABILITY)[0].value for g in image_groups]
    assert probabilities == [pytest.approx(0.83), pytest.approx(0.83), pytest.approx(0.12)]
    assert run_cine.get_qualitative_evaluations()[0].value == codes.PRESENT
    assert run_single.get_qualitative_evaluations()[0].value == codes.ABSENT
    ref = run_cine.source_images[0]
    assert ref.referenced_sop_instance_uid == cine.SOPInstanceUID
    assert list(ref.ReferencedSOPSequence[0].ReferencedFrameNumber) == [40, 55, 56, 80]
    assert "ReferencedFrameNumber" not in run_single.source_images[0].ReferencedSOPSequence[0]
    from pydicom.sr.codedict import codes as dcm_codes

    versions = hd.sr.utils.find_content_items(run_cine[0], name=dcm_codes.DCM.AlgorithmVersion)
    assert versions[0].TextValue == MODEL.version
    parameters = [i.TextValue for i in hd.sr.utils.find_content_items(run_cine[0], name=dcm_codes.DCM.AlgorithmParameters)]
    assert {"threshold=0.4000", "tta_original=0.8000", "tta_flipped=0.8600"} <= set(parameters)
    assert any(p.startswith("tta=") for p in parameters)
    assert "keyframes=40,55,56,80" in parameters
    (region_group,) = groups
    region = region_group.roi
    assert region.GraphicType == "POLYLINE"
    assert [float(v) for v in region.GraphicData][:4] == [128.0, 0.0, 384.0, 0.0]
    assert int(region.ContentSequence[0].ReferencedSOPSequence[0].ReferencedFrameNumber) == 55


def test_a_replacement_names_its_predecessor(dicom_dir, sr_file):
    first = pydicom.dcmread(sr_file)
    second = build_sr(_results(dicom_dir), model=MODEL, series_instance_uid=first.SeriesInstanceUID,
                      sop_instance_uid=generate_uid(), instance_number=2, predecessor=first)
    ref = second.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    assert ref.ReferencedSOPInstanceUID == first.SOPInstanceUID
    assert second.SeriesInstanceUID == first.SeriesInstanceUID and second.InstanceNumber == 2
    buffer = io.BytesIO()
    second.save_as(buffer, enforce_file_format=True)
    assert buffer.getvalue()[128:132] == b"DICM"
