"""Frames located by their fragments when the Basic Offset Table disagrees (odd-length fragments
padded in transit), as pure functions and through FrameSource on the real Rubo cine."""

import io

import numpy as np
import pydicom
import pytest
from pydicom.encaps import generate_fragments, parse_basic_offsets
from pydicom.filebase import DicomBytesIO
from pydicom.pixels import iter_pixels

from arcade_pacs.pipeline.fragments import (
    Fragment,
    FragmentError,
    locate_frames,
    read_fragment_table,
    table_agrees,
)
from arcade_pacs.pipeline.frames import FrameError, FrameSource, decode_frames
from tests.factory import encapsulated, odd_fragment_cine

SOI, J2K = b"\xff\xd8\xff\xdb", b"\xff\x4f\xff\x51"


def frags(*specs):
    """Fragments laid out back to back: each spec is (length, head)."""
    out, position = [], 0
    for length, head in specs:
        out.append(Fragment(position, length, head))
        position += 8 + length
    return out


# --- the pure rules ---------------------------------------------------------------------------

def test_a_table_that_points_at_every_frame_is_trusted():
    f = frags((10, SOI), (20, b"\x00\x01"), (12, SOI))
    assert table_agrees([0, f[2].offset], f, 2)
    assert locate_frames([0, f[2].offset], f, 2) == [(0, 1), (2,)]


def test_padded_fragments_one_per_frame_are_located_despite_the_stale_table():
    odd = frags((11, SOI), (13, SOI), (9, SOI))  # as the modality wrote them
    padded = frags((12, SOI), (14, SOI), (10, SOI))  # as they arrive
    stale = [f.offset for f in odd]
    assert stale == [0, 19, 40]
    assert [f.offset for f in padded] == [0, 20, 42]
    assert not table_agrees(stale, padded, 3)
    assert locate_frames(stale, padded, 3) == [(0,), (1,), (2,)]


def test_several_fragments_per_frame_are_grouped_at_start_of_image_markers():
    f = frags((10, SOI), (10, b"\x12\x34"), (10, b"\xff\xd9"), (10, SOI), (10, b"\xaa\xbb"))
    stale = [0, 37]  # points inside the first frame's data
    assert locate_frames(stale, f, 2) == [(0, 1, 2), (3, 4)]
    assert locate_frames([], f, 2) == [(0, 1, 2), (3, 4)]


def test_jpeg_2000_codestreams_start_frames_too():
    f = frags((10, J2K), (10, b"\x01\x02"), (10, J2K), (10, b"\x03\x04"))
    assert locate_frames([0, 1], f, 2) == [(0, 1), (2, 3)]


def test_one_frame_takes_every_fragment():
    f = frags((10, SOI), (10, b"\x00\x00"), (10, b"\x00\x00"))
    assert locate_frames([5], f, 1) == [(0, 1, 2)]


@pytest.mark.parametrize("specs, n", [
    (((10, SOI), (10, b"\x00\x00"), (10, b"\x00\x00")), 2),  # one start marker, two frames
    (((10, b"\x00\x00"), (10, SOI), (10, SOI)), 2),  # the data does not start with a frame
    (((10, SOI), (10, SOI), (10, SOI)), 4),  # fewer fragments than frames
    ((), 3),  # no fragments at all
])
def test_frames_that_cannot_be_told_apart_give_none(specs, n):
    assert locate_frames([0, 1, 2], frags(*specs), n) is None


def test_a_table_must_have_one_increasing_entry_per_frame():
    f = frags((10, SOI), (10, SOI), (10, SOI))
    assert not table_agrees([0, 18], f, 3)  # too few entries
    assert not table_agrees([0, 36, 18], f, 3)  # not increasing
    assert not table_agrees([18, 36, 54], f, 3)  # does not start at 0


def test_read_fragment_table_reads_headers_and_stops_at_the_delimiter():
    value = encapsulated([b"\xff\xd8abc", b"\xff\xd8defgh"], [0, 13]) + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00trailing"
    offsets, found = read_fragment_table(io.BytesIO(value))
    assert offsets == [0, 13]
    assert found == [Fragment(0, 5, b"\xff\xd8ab"), Fragment(13, 7, b"\xff\xd8de")]


@pytest.mark.parametrize("value, reason", [
    (b"\x00" * 16, "Basic Offset Table item"),
    (encapsulated([])[:8] + b"\x00\xfe\xff\x00\xe0\x02\x00\x00\x00ab", "unexpected tag (FE00,00FF)"),
    (encapsulated([b"abcd"])[:-2], "runs past the end"),
    (encapsulated([b"ab"])[:-5], "truncated item header"),
    (b"\xfe\xff\x00\xe0\x03\x00\x00\x00abc", "Basic Offset Table length 3"),
])
def test_malformed_items_are_named(value, reason):
    with pytest.raises(FragmentError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        read_fragment_table(io.BytesIO(value), end=len(value))


# --- the real cine ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def rubo_frames(rubo):
    return decode_frames(rubo).data


@pytest.fixture(scope="module")
def padded(rubo, tmp_path_factory):
    return odd_fragment_cine(rubo, tmp_path_factory.mktemp("odd") / "padded.dcm", pad=True)


def test_the_padded_cine_defeats_pydicoms_own_frame_reading(padded):
    """The failure the fix is for: pydicom follows the stale table and finds no item there."""
    with pytest.raises(ValueError, match=r"Unexpected tag '\(FE00,00FF\)'"):
        next(iter_pixels(str(padded), indices=[1]))


def test_odd_length_fragments_as_written_decode_like_the_original(rubo, tmp_path, rubo_frames):
    path = odd_fragment_cine(rubo, tmp_path / "odd.dcm")
    source = FrameSource(path)
    assert not source.relocated  # the table matches the odd fragments
    np.testing.assert_array_equal(source.read().data, rubo_frames)


@pytest.mark.parametrize("as_dataset", [False, True])
def test_padded_cine_decodes_like_the_original(padded, rubo_frames, as_dataset):
    source = FrameSource(pydicom.dcmread(padded) if as_dataset else padded)
    assert source.relocated
    assert "extended_offsets" in source.decode_options
    np.testing.assert_array_equal(source.read().data, rubo_frames)
    np.testing.assert_array_equal(source.read([3, 70]).data, rubo_frames[[3, 70]])


def _rubo_fragments(rubo):
    buffer = DicomBytesIO(pydicom.dcmread(rubo).PixelData)
    buffer.is_little_endian = True
    parse_basic_offsets(buffer)
    return list(generate_fragments(buffer))


@pytest.mark.parametrize("as_dataset", [False, True])
def test_frames_split_over_fragments_with_a_stale_table_are_regrouped(rubo, tmp_path, rubo_frames, as_dataset):
    halves = []
    for fragment in _rubo_fragments(rubo):
        cut = len(fragment) // 2 & ~1
        halves += [fragment[:cut], fragment[cut:]]
    ds = pydicom.dcmread(rubo)
    ds.PixelData = encapsulated(halves, [i * 9000 for i in range(96)])  # a table pointing nowhere
    ds["PixelData"].is_undefined_length = True
    path = tmp_path / "split.dcm"
    ds.save_as(path, enforce_file_format=True)
    source = FrameSource(pydicom.dcmread(path) if as_dataset else path)
    assert source.relocated
    np.testing.assert_array_equal(source.read().data, rubo_frames)


def test_a_wrong_table_over_unrecognisable_fragments_is_a_named_failure(rubo, tmp_path):
    ds = pydicom.dcmread(rubo)
    fragments = [b"\x00\x00" + f[2:] for f in _rubo_fragments(rubo)[:4]]  # no start markers left
    ds.PixelData = encapsulated(fragments[:2] + [fragments[2] + fragments[3]] + fragments[3:], [0, 3, 5])
    ds["PixelData"].is_undefined_length = True
    ds.NumberOfFrames = 3
    path = tmp_path / "bad.dcm"
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(FrameError, match="Basic Offset Table .3 entries. does not match the 4 fragments"):
        FrameSource(path)


# --- frame headers checked before decoding -----------------------------------------------------

def _sof(rows, cols, marker=0xC0):
    return bytes([0xFF, marker]) + (11).to_bytes(2, "big") + bytes([8]) + rows.to_bytes(2, "big") + cols.to_bytes(2, "big") + b"\x01\x01\x11\x00"


def test_codestream_size_reads_jpeg_jpeg_ls_and_jpeg_2000_headers():
    from arcade_pacs.pipeline.fragments import codestream_size

    app = b"\xff\xe0" + (16).to_bytes(2, "big") + b"JFIF\x00" + b"\x00" * 9
    assert codestream_size(b"\xff\xd8" + app + _sof(512, 256) + b"\xff\xda") == (512, 256)
    assert codestream_size(b"\xff\xd8" + _sof(100, 200, marker=0xF7)) == (100, 200)  # JPEG-LS SOF55
    siz = b"\xff\x4f\xff\x51" + (41).to_bytes(2, "big") + b"\x00\x00" + (300).to_bytes(4, "big") + (200).to_bytes(4, "big") + b"\x00" * 8
    assert codestream_size(siz) == (200, 300)
    assert codestream_size(b"\x01\x00\x00\x00" + b"\x00" * 60) is None  # an RLE header


@pytest.mark.parametrize("data, reason", [
    (b"\xff\xd8\xff\xda\x00\x08", "before the scan data"),
    (b"\xff\xd8\x00\x00\x00\x00", "marker expected"),
    (b"\xff\xd8\xff\xe0\x00\x01\x00\x00", "length 1"),
    (b"\xff\xd8\xff\xe0\x00\x10", "no JPEG frame header"),
])
def test_malformed_jpeg_headers_are_named(data, reason):
    from arcade_pacs.pipeline.fragments import CodestreamSize, codestream_size

    with pytest.raises(CodestreamSize, match=reason):
        codestream_size(data)


def test_a_forged_frame_header_is_refused_before_the_decoder_allocates(rubo, tmp_path):
    """A real frame whose SOF claims 60000 x 60000: decoding it took 13.8 GB before this check."""
    import resource

    forged = []
    for fragment in _rubo_fragments(rubo)[:2]:
        i = fragment.index(b"\xff\xc0")
        forged.append(fragment[:i + 5] + (60000).to_bytes(2, "big") * 2 + fragment[i + 9:])
    ds = pydicom.dcmread(rubo)
    ds.PixelData = encapsulated(forged, [0, 8 + len(forged[0])])
    ds["PixelData"].is_undefined_length = True
    ds.NumberOfFrames = 2
    path = tmp_path / "bomb.dcm"
    ds.save_as(path, enforce_file_format=True)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(FrameError, match="frame 1 codestream declares 60000x60000 pixels, Rows x Columns is 512x512"):
        FrameSource(path)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KB: no big allocation
