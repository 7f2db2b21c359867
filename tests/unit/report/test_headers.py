"""Source headers made fit for the SR, on the project's real RF sample whose Patient's Sex is '?'."""

import logging

import pydicom
import pytest
from pydicom.uid import generate_uid

from arcade_pacs.core.findings import Finding
from arcade_pacs.report.headers import sanitize_header
from arcade_pacs.report.sr import InstanceResult, ModelIdentity, build_sr

MODEL = ModelIdentity("ARCADE EfficientNetB0 stenosis classifier", "effb0-test-1", generate_uid())
FINDING = Finding(probability=0.2, threshold=0.4, frame_numbers=[1], frame_probabilities=[0.2],
                  tta_original=0.2, tta_flipped=0.2)


@pytest.fixture
def rf_header(dicom_dir):
    return pydicom.dcmread(dicom_dir / "rf_siemens_karstenhilbert_uncompressed.dcm", stop_before_pixels=True)


def _build(header):
    return build_sr([InstanceResult(header, FINDING, MODEL)], model=MODEL, series_instance_uid=generate_uid(),
                    sop_instance_uid=generate_uid(), instance_number=1)


def test_the_raw_header_is_refused_by_the_sr_builder(rf_header):
    assert rf_header.PatientSex == "?"
    with pytest.raises(ValueError):
        _build(rf_header)


def test_an_invalid_value_is_emptied_with_a_warning_naming_the_attribute_only(rf_header, caplog):
    with caplog.at_level(logging.WARNING, logger="arcade_pacs.report.headers"):
        clean = sanitize_header(rf_header)
    assert clean.PatientSex == ""
    assert rf_header.PatientSex == "?"  # the source is not touched
    (record,) = [r for r in caplog.records if r.name == "arcade_pacs.report.headers"]
    assert "PatientSex" in record.getMessage()
    assert "?" not in record.getMessage()
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "StudyInstanceUID", "StudyDate", "StudyTime",
                    "SOPInstanceUID", "Rows", "Columns"):
        assert clean.get(keyword) == rf_header.get(keyword), keyword
    sr = _build(clean)
    assert sr.PatientSex == ""
    assert sr.PatientID == rf_header.PatientID


def test_valid_values_are_kept_and_missing_type2_attributes_added_empty(rf_header, caplog):
    rf_header.PatientSex = "f"
    rf_header.StudyDate = "20131302"  # month 13
    del rf_header.PatientBirthDate
    with caplog.at_level(logging.WARNING, logger="arcade_pacs.report.headers"):
        clean = sanitize_header(rf_header)
    assert clean.PatientSex == "F"
    assert clean.StudyDate == ""
    assert clean.PatientBirthDate == ""
    ours = [r for r in caplog.records if r.name == "arcade_pacs.report.headers"]
    assert {r.getMessage().split()[2] for r in ours} == {"StudyDate", "PatientBirthDate"}
    assert all("20131302" not in r.getMessage() for r in ours)
    _build(clean)


def test_pixel_data_is_not_copied(dicom_dir):
    full = pydicom.dcmread(dicom_dir / "rf_siemens_karstenhilbert_uncompressed.dcm")
    assert "PixelData" in full
    assert "PixelData" not in sanitize_header(full)


@pytest.mark.parametrize("keyword, value", [
    ("PatientBirthDate", "1995-10-25"),  # not a DA
    ("StudyTime", "25:99"),
    ("AccessionNumber", "A" * 17),  # SH holds 16
    ("StudyID", "S" * 17),
])
def test_each_checked_attribute_is_emptied_when_invalid(rf_header, keyword, value):
    rf_header.PatientSex = "M"
    setattr(rf_header, keyword, value)
    clean = sanitize_header(rf_header)
    assert clean.get(keyword) == ""
    assert getattr(_build(clean), keyword) == ""


def test_the_patient_identity_is_never_changed(rf_header):
    rf_header.PatientSex = "M"
    rf_header.PatientID = "P" * 70  # over LO's 64: still the patient's identifier, kept as sent
    clean = sanitize_header(rf_header)
    assert clean.PatientID == rf_header.PatientID
    assert clean.PatientName == rf_header.PatientName
