"""Property-based fuzzing (hypothesis) of the frame decoder: whatever the bytes, the answer is
frames in [0, 1] or a FrameError, and the pure fragment functions keep their contracts."""

import io
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit, RLELossless

from arcade_pacs.pipeline.fragments import (
    CodestreamSize,
    Fragment,
    FragmentError,
    codestream_size,
    locate_frames,
    read_fragment_table,
)
from arcade_pacs.pipeline.frames import FrameError, FrameSource
from arcade_pacs.pipeline.part10 import Kind
from tests.factory import encapsulated, xa_dataset
from tests.hostile import CANARIES, Case, encode, native_base

FUZZ = settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])

heads = st.one_of(st.just(b"\xff\xd8\xff\xdb"), st.just(b"\xff\x4f\xff\x51"), st.binary(min_size=0, max_size=4))


@st.composite
def layouts(draw):
    specs = draw(st.lists(st.tuples(st.integers(0, 500), heads), max_size=12))
    fragments, position = [], 0
    for length, head in specs:
        fragments.append(Fragment(position, length, head[:length]))
        position += 8 + length
    offsets = draw(st.one_of(st.just([]), st.lists(st.integers(0, position + 20), max_size=14),
                             st.just([f.offset for f in fragments])))
    return offsets, fragments, draw(st.integers(0, 14))


@FUZZ
@given(layouts())
def test_located_frames_partition_the_fragments_in_order(layout):
    offsets, fragments, n_frames = layout
    groups = locate_frames(offsets, fragments, n_frames)
    if groups is None:
        return
    assert len(groups) == n_frames
    assert all(groups)
    assert [i for g in groups for i in g] == list(range(len(fragments)))  # contiguous, in order, complete


@FUZZ
@given(layouts())
def test_equal_counts_mean_one_fragment_per_frame_whatever_the_table(layout):
    offsets, fragments, _ = layout
    if fragments:
        assert locate_frames(offsets, fragments, len(fragments)) == [(i,) for i in range(len(fragments))]


@FUZZ
@given(st.binary(max_size=400))
def test_any_bytes_give_a_fragment_table_or_a_fragment_error(data):
    try:
        offsets, fragments = read_fragment_table(io.BytesIO(data), end=len(data))
    except FragmentError:
        return
    for f in fragments:
        assert 0 <= f.offset
        assert f.offset + 8 + f.length <= len(data)
    assert all(0 <= o < 2**32 for o in offsets)


@FUZZ
@given(st.one_of(st.binary(max_size=200), st.binary(max_size=200).map(lambda b: b"\xff\xd8" + b),
                 st.binary(max_size=60).map(lambda b: b"\xff\x4f\xff\x51" + b)))
def test_any_bytes_give_a_size_none_or_a_codestream_error(data):
    try:
        size = codestream_size(data)
    except CodestreamSize:
        return
    assert size is None or (len(size) == 2 and all(isinstance(v, int) for v in size))


numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-(2**40), 2**40))


def _ds_text(value) -> str:
    text = repr(float(value)) if isinstance(value, float) else str(value)
    return text[:16]


@st.composite
def datasets(draw):
    rows, cols, frames = draw(st.integers(1, 48)), draw(st.integers(1, 48)), draw(st.integers(1, 3))
    bits = draw(st.sampled_from([8, 12, 16]))
    dtype = np.uint8 if bits == 8 else np.uint16
    pixels = draw(st.integers(0, 2**bits - 1).flatmap(
        lambda v: st.just(np.random.default_rng(v).integers(0, 2**bits, (frames, rows, cols)).astype(dtype))))
    ds = xa_dataset(pixels, bits_stored=bits, photometric=draw(st.sampled_from(["MONOCHROME1", "MONOCHROME2"])))
    for keyword in ("RescaleSlope", "RescaleIntercept", "WindowCenter", "WindowWidth", "PixelPaddingValue"):
        if draw(st.booleans()):
            value = draw(numbers)
            if keyword == "PixelPaddingValue":
                ds.PixelPaddingValue = int(value) % 65536 if np.isfinite(value) else 0
            else:
                from pydicom.datadict import tag_for_keyword
                from pydicom.dataelem import RawDataElement
                from pydicom.tag import Tag

                raw = _ds_text(value).encode()
                raw += b" " * (len(raw) % 2)
                tag = Tag(tag_for_keyword(keyword))
                ds._dict[tag] = RawDataElement(tag, "DS", len(raw), raw, 0, False, True)
    cut = draw(st.one_of(st.just(None), st.integers(0, len(ds.PixelData))))
    if cut is not None:
        ds.PixelData = ds.PixelData[:cut]
    if draw(st.booleans()):  # encapsulated: random fragments and table under a compressed syntax
        fragments = draw(st.lists(st.one_of(st.binary(max_size=300), st.binary(max_size=300).map(lambda b: b"\xff\xd8" + b)),
                                  max_size=5))
        offsets = draw(st.one_of(st.just(None), st.lists(st.integers(0, 2000), max_size=5)))
        ds.file_meta.TransferSyntaxUID = draw(st.sampled_from([JPEGBaseline8Bit, RLELossless]))
        ds.PixelData = encapsulated(fragments, offsets)
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
    else:
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def _frames_or_frame_error(src) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            source = FrameSource(src, max_frames=2000)
            source.scan()
            data = source.read().data
        except FrameError as exc:
            assert not any(c in str(exc) for c in CANARIES)
            assert exc.kind in Kind
            event(f"FrameError ({exc.kind})")
            return
    event("frames")
    assert np.isfinite(data).all()
    assert data.min() >= 0.0
    assert data.max() <= 1.0
    assert data.shape[1:] == (512, 512)


@pytest.mark.slow
@settings(deadline=None, max_examples=120, suppress_health_check=[HealthCheck.too_slow])
@given(datasets())
def test_random_images_give_frames_in_unit_range_or_a_frame_error(ds):
    _frames_or_frame_error(ds)
    buffer = io.BytesIO()
    try:
        ds.save_as(buffer, enforce_file_format=True)
    except Exception:
        return  # values pydicom cannot write: the in-memory case above covered them
    path = __import__("tempfile").mktemp(suffix=".dcm")
    with open(path, "wb") as f:
        f.write(buffer.getvalue())
    try:
        _frames_or_frame_error(path)
    finally:
        __import__("os").unlink(path)


@pytest.fixture(scope="module")
def real_body(rubo):
    return encode(native_base(rubo, frames=2, size=48))


@pytest.mark.slow
@settings(deadline=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(edits=st.lists(st.tuples(st.floats(0, 1), st.sampled_from(["flip", "delete", "insert", "zero"]), st.binary(min_size=1, max_size=8)),
                      min_size=1, max_size=6))
def test_mutated_real_files_give_frames_or_a_frame_error(real_body, tmp_path, edits):
    body = bytearray(real_body)
    for where, how, data in edits:
        i = int(where * (len(body) - 1))
        if how == "flip":
            body[i] ^= data[0] or 1
        elif how == "delete":
            del body[i:i + len(data)]
        elif how == "insert":
            body[i:i] = data
        else:
            body[i:i + len(data)] = bytes(len(data))
    path = Case("fuzz", "fuzz", bytes(body)).write(tmp_path)
    try:
        _frames_or_frame_error(path)
    finally:
        path.unlink()


def test_the_fuzzers_reach_both_outcomes(rubo, tmp_path):
    """The properties above are not vacuous: a sound file decodes, a broken one is a FrameError."""
    body = encode(native_base(rubo, frames=2, size=48))
    good = Case("good", "control", body).write(tmp_path)
    assert FrameSource(good).read().data.shape == (2, 512, 512)
    bad = Case("bad", "control", body[: len(body) // 3]).write(tmp_path)
    with pytest.raises(FrameError):
        FrameSource(bad).read()
