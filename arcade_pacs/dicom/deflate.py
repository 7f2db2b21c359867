"""Deflated Explicit VR Little Endian (PS3.5 A.5) without decompression bombs.

A deflated data set of 1 MB can inflate to gigabytes, and pydicom inflates a whole file in
memory before reading it. :func:`inflate_to_file` streams the inflation to disk with a bound,
so the receipt checks can read the header lazily from the inflated copy; the bound also caps
what the analysis later inflates in memory.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

CHUNK = 1 << 20


class InflateError(ValueError):
    """The deflated data set is corrupt (or, as :class:`InflatedTooLarge`, too large once inflated)."""


class InflatedTooLarge(InflateError):
    """The deflated data set inflates to more than allowed (a deflate bomb)."""


class NoFileMeta(InflateError):
    """No File Meta Information Group Length where PS3.10 7.1 puts it: not a Part 10 file."""


def meta_end(source: Path | str | bytes | bytearray) -> int:
    """Byte offset just past the File Meta Information of a Part 10 file (path or bytes)
    (PS3.10 7.1), found from its File Meta Information Group Length (0002,0000), which must
    come first; :class:`NoFileMeta` when there is none."""
    if isinstance(source, (bytes, bytearray)):
        head = bytes(source[:144])
    else:
        with open(source, "rb") as fp:
            head = fp.read(144)
    if len(head) < 144 or head[128:132] != b"DICM" or head[132:136] != b"\x02\x00\x00\x00" or head[136:138] != b"UL":
        raise NoFileMeta("no File Meta Information Group Length")
    return 144 + struct.unpack("<I", head[140:144])[0]


def _inflate(fin, fout, max_bytes: int) -> int:
    """Inflate the raw deflate stream from ``fin`` into ``fout`` (or only count it when ``fout``
    is None), stopping with :class:`InflateError` past ``max_bytes``."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    total = 0

    def emit(data: bytes) -> None:
        nonlocal total
        total += len(data)
        if total > max_bytes:
            raise InflatedTooLarge(f"deflated data set exceeds {max_bytes} bytes once inflated")
        if fout is not None:
            fout.write(data)

    try:
        while not inflater.eof and (chunk := fin.read(CHUNK)):
            pending = chunk
            while pending and not inflater.eof:
                out = inflater.decompress(pending, CHUNK)
                emit(out)
                if not out and inflater.unconsumed_tail == pending:
                    raise InflateError("deflate stream makes no progress")
                pending = inflater.unconsumed_tail
        emit(inflater.flush())
    except zlib.error as exc:
        raise InflateError(f"corrupt deflate stream: {exc}") from None
    return total


def inflated_size(data: bytes | Path, max_bytes: int) -> int:
    """Inflated size of the data set of a Deflated Part 10 file (path or bytes), counted as it
    streams (nothing is kept); :class:`InflateError` past ``max_bytes`` or when corrupt."""
    import io

    if isinstance(data, (bytes, bytearray)):
        fin = io.BytesIO(data)
        fin.seek(meta_end(data))
        return _inflate(fin, None, max_bytes)
    with open(data, "rb") as fin:
        fin.seek(meta_end(data))
        return _inflate(fin, None, max_bytes)


def inflate_into(source: Path | bytes, fout, max_bytes: int) -> int:
    """Write the data set of a Deflated Part 10 file (path or bytes), inflated, to the binary
    stream ``fout`` (at most ``max_bytes``); returns its size. Nothing else is held in memory."""
    import io

    start = meta_end(source)
    if isinstance(source, (bytes, bytearray)):
        fin = io.BytesIO(source)
        fin.seek(start)
        return _inflate(fin, fout, max_bytes)
    with open(source, "rb") as fin:
        fin.seek(start)
        return _inflate(fin, fout, max_bytes)


def inflate_to_file(src: Path, dst: Path, max_bytes: int) -> int:
    """Write ``src`` (deflated) to ``dst`` as Explicit VR Little Endian, inflating at most
    ``max_bytes``; returns the inflated size of the data set.

    Raises
    ------
    InflateError
        Corrupt deflate stream, or (:class:`InflatedTooLarge`) more than ``max_bytes`` once
        inflated; ``dst`` is removed.
    """
    import pydicom
    from pydicom.filewriter import write_file_meta_info
    from pydicom.uid import ExplicitVRLittleEndian

    start = meta_end(src)
    meta = pydicom.filereader.read_file_meta_info(src)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    try:
        with open(src, "rb") as fin, open(dst, "wb") as fout:
            fout.write(b"\x00" * 128 + b"DICM")
            write_file_meta_info(fout, meta)
            fin.seek(start)
            return _inflate(fin, fout, max_bytes)
    except BaseException:
        Path(dst).unlink(missing_ok=True)
        raise
