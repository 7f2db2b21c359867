"""Counting data elements without parsing them (element-count bomb guard)."""

import io
import struct

import pydicom
import pytest

from arcade_pacs.dicom.deflate import meta_end
from arcade_pacs.dicom.elementcount import TooManyElements, count_elements
from tests.hostile import encode, native_base


def _pydicom_count(ds) -> int:
    return sum(1 + (sum(_pydicom_count(item) for item in e.value) if e.VR == "SQ" else 0) for e in ds)


@pytest.mark.parametrize("name", [
    "xa_rubo0002_cine96_jpegbaseline.dcm", "xa1_wg04_jpeglossless_sv1.dcm", "xa1_wg04_rle.dcm",
    "xa1_wg04_uncompressed_reference.dcm", "rf_siemens_karstenhilbert_uncompressed.dcm",
])
def test_the_count_equals_pydicoms_on_every_sample(dicom_dir, name):
    path = dicom_dir / name
    ds = pydicom.dcmread(path)
    with open(path, "rb") as fp:
        count = count_elements(fp, meta_end(path), path.stat().st_size, ds.file_meta.TransferSyntaxUID.is_implicit_VR, 10**6)
    assert count == _pydicom_count(ds)


@pytest.mark.parametrize("implicit", [False, True])
def test_nested_sequences_of_both_lengths_are_counted(rubo, implicit):
    from pydicom.dataset import Dataset

    ds = native_base(rubo, frames=1, size=8)
    item = Dataset()
    item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = "1.2.3", "1.2.3.4"
    inner = Dataset()
    inner.ReferencedImageSequence = [item, item]
    ds.ReferencedSeriesSequence = [inner]
    for undefined in (False, True):
        ds["ReferencedSeriesSequence"].is_undefined_length = undefined
        body = encode(ds, implicit=implicit)
        assert count_elements(io.BytesIO(body), 0, len(body), implicit, 10**6) == _pydicom_count(ds)


def test_a_million_empty_elements_stop_at_the_limit():
    body = b"".join(struct.pack("<HH2sH", 0x0011, 0x1000 + k % 0xE000, b"SH", 0) for k in range(100_000))
    with pytest.raises(TooManyElements, match="more than 50000 data elements"):
        count_elements(io.BytesIO(body), 0, len(body), False, 50_000)
