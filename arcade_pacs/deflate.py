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
    """The deflated data set is corrupt, or larger than allowed once inflated."""


def meta_end(path: Path) -> int:
    """Byte offset just past the File Meta Information of a Part 10 file (PS3.10 7.1), found
    from its File Meta Information Group Length (0002,0000), which must come first."""
    with open(path, "rb") as fp:
        head = fp.read(144)
    if len(head) < 144 or head[128:132] != b"DICM" or head[132:136] != b"\x02\x00\x00\x00" or head[136:138] != b"UL":
        raise InflateError("no File Meta Information Group Length")
    return 144 + struct.unpack("<I", head[140:144])[0]


def inflate_to_file(src: Path, dst: Path, max_bytes: int) -> int:
    """Write ``src`` (deflated) to ``dst`` as Explicit VR Little Endian, inflating at most
    ``max_bytes``; returns the inflated size of the data set.

    Raises
    ------
    InflateError
        Corrupt deflate stream, or more than ``max_bytes`` once inflated (``dst`` is removed).
    """
    import pydicom
    from pydicom.filewriter import write_file_meta_info
    from pydicom.uid import ExplicitVRLittleEndian

    start = meta_end(src)
    meta = pydicom.filereader.read_file_meta_info(src)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    total = 0
    try:
        with open(src, "rb") as fin, open(dst, "wb") as fout:
            fout.write(b"\x00" * 128 + b"DICM")
            write_file_meta_info(fout, meta)
            fin.seek(start)
            while chunk := fin.read(CHUNK):
                data = inflater.decompress(chunk, CHUNK)
                while True:
                    total += len(data)
                    if total > max_bytes:
                        raise InflateError(f"deflated data set exceeds {max_bytes} bytes once inflated")
                    fout.write(data)
                    if not inflater.unconsumed_tail:
                        break
                    data = inflater.decompress(inflater.unconsumed_tail, CHUNK)
            data = inflater.flush()
            total += len(data)
            if total > max_bytes:
                raise InflateError(f"deflated data set exceeds {max_bytes} bytes once inflated")
            fout.write(data)
    except zlib.error as exc:
        Path(dst).unlink(missing_ok=True)
        raise InflateError(f"corrupt deflate stream: {exc}") from None
    except BaseException:
        Path(dst).unlink(missing_ok=True)
        raise
    return total
