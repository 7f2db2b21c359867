"""The one door for DICOM input: each bound refuses with its kind, from a file and from bytes,
and the kind alone decides the answer (a DICOM status at the SCP, an HTTP code at /predict)."""

import io
import struct

import numpy as np
import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit

from arcade_pacs.admin.routers.predict import HTTP_STATUS
from arcade_pacs.pipeline.part10 import InputError, Kind, Limits, check_image, frame_layout, open_part10
from arcade_pacs.receive.receipt import DICOM_STATUS, ReceiptKind, Refusal
from tests.factory import deflate_bomb, xa_dataset
from tests.hostile import Case, encode, native_base


def part10(ds) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@pytest.fixture(params=["file", "bytes"])
def as_source(request, tmp_path):
    """The same Part 10 data as a path (a received or stored file) or as bytes (an upload)."""
    def make(data: bytes):
        if request.param == "bytes":
            return data
        path = tmp_path / f"{len(list(tmp_path.iterdir()))}.dcm"
        path.write_bytes(data)
        return path
    return make


def refused(source, limits=None, **kwargs) -> InputError:
    limits = limits or Limits()
    with pytest.raises(InputError) as caught:
        ds = open_part10(source, limits, **kwargs)
        check_image(ds, limits, file_size=None if isinstance(source, bytes) else source.stat().st_size)
    return caught.value


def test_a_sound_cine_opens_and_declares_its_shape(as_source):
    ds = xa_dataset(np.zeros((3, 32, 48), np.uint8))
    opened = open_part10(as_source(part10(ds)), Limits())
    shape = check_image(opened, Limits())
    assert (shape.rows, shape.columns, shape.frames) == (32, 48, 3)


def test_not_part10_is_an_unknown_format(as_source):
    assert refused(as_source(b"\x00" * 200)).kind == Kind.UNKNOWN_FORMAT


def test_too_many_elements_is_too_large_before_parsing(as_source, rubo):
    ds = native_base(rubo, frames=1, size=8)
    body = encode(ds)
    bomb = b"".join(struct.pack("<HH2sH", 0x0011, 0x1000 + k, b"SH", 0) for k in range(2000))
    case = Case("elements", "bomb", bomb + body)
    data = case.write(__import__("pathlib").Path(__import__("tempfile").mkdtemp())).read_bytes()
    error = refused(as_source(data), Limits(max_elements=1000))
    assert error.kind == Kind.TOO_LARGE
    assert "more than 1000 data elements" in str(error)


def test_a_deflate_bomb_is_too_large_and_a_corrupt_stream_unreadable(tmp_path, as_source):
    deflate_bomb(tmp_path / "bomb.dcm", 8 * 2**20)
    data = (tmp_path / "bomb.dcm").read_bytes()
    assert refused(as_source(data), Limits(max_inflated_bytes=2**20)).kind == Kind.TOO_LARGE
    start = 144 + struct.unpack("<I", data[140:144])[0]
    corrupt = data[:start] + b"\xff" * 64
    assert refused(as_source(corrupt)).kind == Kind.UNREADABLE


def test_a_deflated_file_inflates_into_the_given_file_within_the_bound(tmp_path):
    deflate_bomb(tmp_path / "small.dcm", 2**20)
    target = tmp_path / "small.inflated"
    ds = open_part10(tmp_path / "small.dcm", Limits(), inflate_to=target)
    assert target.stat().st_size > 2**20
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian


@pytest.mark.parametrize("change, kind", [
    (lambda ds: setattr(ds, "Rows", 65535), Kind.TOO_LARGE),
    (lambda ds: setattr(ds, "NumberOfFrames", 5000), Kind.TOO_LARGE),
    (lambda ds: setattr(ds, "NumberOfFrames", 0), Kind.INCONSISTENT),
    (lambda ds: setattr(ds, "Columns", 0), Kind.INCONSISTENT),
    (lambda ds: delattr(ds, "PixelData"), Kind.INCONSISTENT),
    (lambda ds: setattr(ds, "PixelData", ds.PixelData[:100]), Kind.INCONSISTENT),
    (lambda ds: setattr(ds, "PhotometricInterpretation", "RGB"), Kind.UNSUPPORTED),
])
def test_declared_attributes_are_checked_before_any_pixel_buffer(as_source, change, kind):
    ds = xa_dataset(np.zeros((3, 32, 32), np.uint8))
    change(ds)
    assert refused(as_source(part10(ds))).kind == kind


def test_native_pixel_data_cut_short_with_its_length_intact_is_truncated(as_source):
    ds = xa_dataset(np.zeros((4, 64, 64), np.uint8))
    data = part10(ds)
    error = refused(as_source(data[: len(data) - 5000]))
    assert error.kind == Kind.TRUNCATED
    assert "11384 of its 16384 bytes" in str(error)
    assert refused(as_source(data[: len(data) - 5000]), defer_size=None).kind == Kind.TRUNCATED


def test_a_forged_frame_header_is_inconsistent(rubo):
    from tests.hostile import jpeg_base

    ds, _ = jpeg_base(rubo, frames=2)
    ds.Rows = ds.Columns = 256  # the codestreams say 512 x 512
    shape = check_image(ds, Limits(), syntax=JPEGBaseline8Bit)
    with pytest.raises(InputError, match="codestream declares 512x512") as caught:
        frame_layout(ds, None, shape)
    assert caught.value.kind == Kind.INCONSISTENT


def test_every_kind_has_one_dicom_status_and_one_http_code():
    assert set(HTTP_STATUS) == set(Kind)
    assert set(DICOM_STATUS) == set(Kind) | set(ReceiptKind)
    assert {HTTP_STATUS[Kind.UNKNOWN_FORMAT], HTTP_STATUS[Kind.TOO_LARGE]} == {415, 413}
    assert DICOM_STATUS[Kind.TOO_LARGE] == 0xA700
    assert DICOM_STATUS[Kind.INCONSISTENT] == 0xA900
    assert DICOM_STATUS[Kind.UNREADABLE] == 0xC210
    assert DICOM_STATUS[Kind.TRUNCATED] == 0xA700


def test_the_status_follows_the_kind_never_the_message():
    # What the old handler matched ("more than", "exceeds") decides nothing now.
    assert Refusal(Kind.UNREADABLE, "more than 10 data elements").status == 0xC210
    assert Refusal(Kind.TOO_LARGE, "corrupt").status == 0xA700


def test_the_door_names_no_data_value(as_source):
    ds = xa_dataset(np.zeros((2, 16, 16), np.uint8))
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    ds.PatientName, ds.PatientID = "Canary^Phi", "PHI-CANARY-7"
    tag = Tag("NumberOfFrames")  # an IS that is no number, as written by a broken modality
    ds._dict[tag] = RawDataElement(tag, "IS", 12, b"PHI-CANARY-7", 0, False, True)
    error = refused(as_source(part10(ds)))
    assert error.kind == Kind.UNREADABLE
    assert "CANARY" not in str(error)


def test_a_stored_file_and_an_upload_give_the_same_kind(tmp_path):
    """One door: the worker (FrameSource on a file) and /predict (bytes) refuse alike."""
    from arcade_pacs.pipeline.frames import FrameError, FrameSource, frames_from_bytes

    ds = xa_dataset(np.zeros((4, 64, 64), np.uint8))
    data = part10(ds)[:-5000]
    path = tmp_path / "cut.dcm"
    path.write_bytes(data)
    with pytest.raises(FrameError) as from_file:
        FrameSource(path)
    with pytest.raises(FrameError) as from_bytes:
        frames_from_bytes(data)
    assert from_file.value.kind == from_bytes.value.kind == Kind.TRUNCATED
    assert pydicom.dcmread(io.BytesIO(part10(ds))).Rows == 64
