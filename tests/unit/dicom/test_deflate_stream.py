"""The inflater ends at the deflate stream's end, whatever follows it (a pad byte on the wire)."""

import io
import zlib

import numpy as np
import pytest

from arcade_pacs.dicom.deflate import CHUNK, InflateError, _inflate


def _deflate(data: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return c.compress(data) + c.flush()


@pytest.mark.parametrize("size", [CHUNK - 1, CHUNK, 3 * CHUNK + 17])
@pytest.mark.parametrize("trailer", [b"", b"\x00", b"\x00\x00\x00"])
def test_a_stream_ending_inside_a_chunk_with_padding_after_it_ends(size, trailer):
    """A data set padded to even length after its deflate stream (PS3.5 A.5) once looped forever
    when the stream ended while output was held back by the chunk limit."""
    data = np.random.default_rng(size).integers(0, 4, size, dtype=np.uint8).tobytes()  # expands past CHUNK per read
    out = io.BytesIO()
    assert _inflate(io.BytesIO(_deflate(data) + trailer), out, max_bytes=10**9) == size
    assert out.getvalue() == data


def test_the_size_limit_still_holds():
    with pytest.raises(InflateError, match="exceeds"):
        _inflate(io.BytesIO(_deflate(b"\x00" * (5 * CHUNK))), None, max_bytes=CHUNK)
