"""What receipt refuses without decoding pixels: :func:`check_dataset` as a pure function.

Each case names the status a modality would receive (PS3.4 B.2.3) and the reason; the same
refusals over a real association are in ``tests/dicom/test_scp.py``.
"""

import numpy as np
import pytest
from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit, SecondaryCaptureImageStorage

from arcade_pacs.receive.receipt import (
    CANNOT_UNDERSTAND,
    DATASET_DOES_NOT_MATCH_SOP_CLASS,
    OUT_OF_RESOURCES,
    Refusal,
    check_dataset,
)
from arcade_pacs.settings import Settings
from tests.factory import xa_dataset

XA = "1.2.840.10008.5.1.4.1.1.12.1"


def _cine(frames: int = 3):
    return xa_dataset(np.full((frames, 32, 32), 100, np.uint8))


def _refusal(ds, sop_class=XA, settings=None, syntax=ExplicitVRLittleEndian):
    with pytest.raises(Refusal) as caught:
        check_dataset(ds, sop_class, settings or Settings(), syntax)
    return caught.value.status, str(caught.value)


def test_a_sound_cine_passes():
    check_dataset(_cine(), XA, Settings(), ExplicitVRLittleEndian)


def _drop(keyword):
    def change(ds):
        delattr(ds, keyword)
    return change


def _set(keyword, value):
    def change(ds):
        setattr(ds, keyword, value)
    return change


@pytest.mark.parametrize(
    "change, status, reason",
    [
        (_drop("SOPInstanceUID"), DATASET_DOES_NOT_MATCH_SOP_CLASS, "missing or invalid SOPInstanceUID"),
        (_set("StudyInstanceUID", "1.2.abc"), DATASET_DOES_NOT_MATCH_SOP_CLASS, "missing or invalid StudyInstanceUID"),
        (_set("SeriesInstanceUID", "1." + "2" * 70), DATASET_DOES_NOT_MATCH_SOP_CLASS, "missing or invalid SeriesInstanceUID"),
        (_drop("PixelData"), DATASET_DOES_NOT_MATCH_SOP_CLASS, "no Pixel Data"),
        (_set("PhotometricInterpretation", "RGB"), CANNOT_UNDERSTAND, "unsupported Photometric Interpretation"),
        (_set("SamplesPerPixel", 3), CANNOT_UNDERSTAND, "more than one sample per pixel"),
        (_set("Rows", 0), DATASET_DOES_NOT_MATCH_SOP_CLASS, "Rows or Columns missing or zero"),
        (_set("NumberOfFrames", 0), DATASET_DOES_NOT_MATCH_SOP_CLASS, "Number of Frames is zero"),
        (_set("NumberOfFrames", 2), DATASET_DOES_NOT_MATCH_SOP_CLASS, "more frames than Number of Frames"),
        (_set("NumberOfFrames", 4), DATASET_DOES_NOT_MATCH_SOP_CLASS, "shorter than Rows x Columns x Frames"),
    ],
)
def test_refusals_name_status_and_reason(change, status, reason):
    ds = _cine()
    change(ds)
    got_status, got_reason = _refusal(ds)
    assert got_status == status
    assert reason in got_reason


def test_a_data_set_of_another_sop_class_than_its_context():
    assert _refusal(_cine(), sop_class="1.2.840.10008.5.1.4.1.1.12.2")[0] == DATASET_DOES_NOT_MATCH_SOP_CLASS


def test_nothing_that_looks_like_dicom():
    from pydicom import Dataset

    assert _refusal(Dataset())[0] == CANNOT_UNDERSTAND


def test_limits_come_from_the_settings():
    settings = Settings()
    settings.pipeline.max_frames = 2
    status, reason = _refusal(_cine(3), settings=settings)
    assert status == OUT_OF_RESOURCES
    assert "exceeds configured limits" in reason
    settings.pipeline.max_frames, settings.pipeline.max_rows = 10, 16
    assert _refusal(_cine(3), settings=settings)[0] == OUT_OF_RESOURCES


def test_encapsulated_pixel_data_is_left_to_the_decoder():
    ds = _cine()
    ds.PixelData = b"\x00" * 10  # would be "short" if native; compressed length says nothing
    check_dataset(ds, XA, Settings(), JPEGBaseline8Bit)


@pytest.mark.parametrize("modality, refused", [("XA", False), ("OT", True), ("", True)])
def test_secondary_capture_only_as_xa(modality, refused):
    ds = _cine(1)
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.Modality = modality
    if refused:
        assert _refusal(ds, sop_class=SecondaryCaptureImageStorage)[0] == CANNOT_UNDERSTAND
    else:
        check_dataset(ds, SecondaryCaptureImageStorage, Settings(), ExplicitVRLittleEndian)
