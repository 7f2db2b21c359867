"""Where each frame of encapsulated pixel data lies, even when the Basic Offset Table is wrong.

Encapsulated (compressed) Pixel Data is a sequence of items (PS3.5 A.4): a Basic Offset Table,
then fragments; a frame is one or more consecutive fragments, and the table gives the byte
offset of each frame's first fragment item, measured from the first fragment's item tag.

Some modalities write fragments of odd length, which PS3.5 7.5 forbids; senders such as
DCMTK's storescu and Orthanc pad each one to even length in transit but keep the table, which
then points 1, 2, 3... bytes before the items it means ("Unexpected tag (FE00,00FF)" when
read). The fragments themselves are intact, so frames are found from them instead:

1. a table whose every offset starts a fragment (one per frame) is trusted;
2. otherwise, as many fragments as frames means one fragment per frame (what PS3.5 A.4 requires
   of JPEG, JPEG-LS, RLE and most encoders anyway);
3. otherwise each frame starts where a fragment starts with a codestream's first marker (JPEG
   and JPEG-LS SOI ``FFD8``, PS3.5 A.4.1/A.4.3, ITU-T T.81 B.2.1; JPEG 2000 SOC+SIZ
   ``FF4F FF51``, PS3.5 A.4.4), when that gives exactly the declared number of frames.

:func:`read_fragment_table` reads only item headers (never the compressed data);
:func:`locate_frames` is a pure function of what it read.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO

ITEM = 0xFFFEE000
SEQUENCE_DELIMITER = 0xFFFEE0DD
FRAME_START_MARKERS = (b"\xff\xd8", b"\xff\x4f\xff\x51")
"""First bytes of a frame's codestream: JPEG/JPEG-LS Start Of Image; JPEG 2000 SOC then SIZ."""


class FragmentError(ValueError):
    """The encapsulated items cannot be read (wrong tag, undefined or impossible length)."""


@dataclass(frozen=True)
class Fragment:
    """One fragment item: ``offset`` of its item tag from the first fragment's item tag (the
    reference of Basic Offset Table values), ``length`` of its data, its first bytes ``head``."""

    offset: int
    length: int
    head: bytes


def read_fragment_table(fp: BinaryIO, end: int | None = None) -> tuple[list[int], list[Fragment]]:
    """Read the Basic Offset Table and every fragment's header from ``fp``.

    ``fp`` is positioned at the Basic Offset Table's item tag (the start of the Pixel Data
    value). Reading stops at the Sequence Delimitation Item, or at ``end`` (the position just
    past the value, when the delimiter is not part of it, as in pydicom's in-memory values).
    The fragments' data are skipped, not read.

    Raises
    ------
    FragmentError
        An item is not where one must be, or an item's length runs past the end.
    """
    if end is None:
        here = fp.tell()
        end = fp.seek(0, 2)
        fp.seek(here)

    def header() -> tuple[int, int] | None:
        raw = fp.read(8)
        if len(raw) < 8:
            return None
        group, element, length = struct.unpack("<HHI", raw)
        return (group << 16) | element, length

    first = header()
    if first is None or first[0] != ITEM:
        raise FragmentError("encapsulated Pixel Data does not start with a Basic Offset Table item")
    table_length = first[1]
    if table_length % 4 or fp.tell() + table_length > end:
        raise FragmentError(f"Basic Offset Table length {table_length} is invalid")
    table = fp.read(table_length)
    offsets = list(struct.unpack(f"<{table_length // 4}I", table))
    start = fp.tell()
    fragments: list[Fragment] = []
    while fp.tell() < end:
        position = fp.tell()
        item = header()
        if item is None:
            raise FragmentError(f"truncated item header at fragment {len(fragments) + 1}")
        tag, length = item
        if tag == SEQUENCE_DELIMITER:
            break
        if tag != ITEM:
            raise FragmentError(f"unexpected tag ({tag >> 16:04X},{tag & 0xFFFF:04X}) where fragment "
                                f"{len(fragments) + 1} should start")
        if length == 0xFFFFFFFF or fp.tell() + length > end:
            raise FragmentError(f"fragment {len(fragments) + 1} length {length} runs past the end of the data")
        head = fp.read(min(length, 4))
        fragments.append(Fragment(position - start, length, head))
        fp.seek(position + 8 + length)
    return offsets, fragments


def table_agrees(offsets: Sequence[int], fragments: Sequence[Fragment], n_frames: int) -> bool:
    """True when the Basic Offset Table has one entry per frame, each the start of a fragment,
    the first at 0 and all increasing (PS3.5 A.4): then it can be used as it is."""
    if len(offsets) != n_frames or not offsets or offsets[0] != 0:
        return False
    starts = {f.offset for f in fragments}
    return all(o in starts for o in offsets) and all(a < b for a, b in zip(offsets, offsets[1:], strict=False))


def locate_frames(offsets: Sequence[int], fragments: Sequence[Fragment], n_frames: int) -> list[tuple[int, ...]] | None:
    """The 0-based fragment indices of each frame, or ``None`` when they cannot be told apart.

    The rules, in order, are those of the module docstring: a table that agrees with the
    fragments; one fragment per frame when the counts are equal; one frame for all fragments
    when a single frame is declared; frames starting at fragments that begin with a start marker.
    """
    if not fragments or n_frames < 1:
        return None
    if table_agrees(offsets, fragments, n_frames):
        first = {f.offset: i for i, f in enumerate(fragments)}
        firsts = [first[o] for o in offsets]
    elif len(fragments) == n_frames:
        return [(i,) for i in range(n_frames)]
    elif n_frames == 1:
        return [tuple(range(len(fragments)))]
    else:
        firsts = [i for i, f in enumerate(fragments) if f.head.startswith(FRAME_START_MARKERS)]
        if len(firsts) != n_frames or firsts[0] != 0:
            return None
    bounds = [*firsts, len(fragments)]
    return [tuple(range(a, b)) for a, b in zip(bounds, bounds[1:], strict=False)]


JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF, 0xF7}
"""Start Of Frame markers (ITU-T T.81 Table B.1; 0xF7 is JPEG-LS SOF55, ITU-T T.87)."""
_NO_LENGTH = {0x01, *range(0xD0, 0xD9)}  # TEM, RSTn, SOI: markers without a length field
HEADER_WINDOW = 65536
"""Bytes of a frame's codestream searched for its size (headers come first; 64 KB is ample)."""


class CodestreamSize(ValueError):
    """A codestream's header is missing or malformed where a frame starts."""


def codestream_size(data: bytes) -> tuple[int, int] | None:
    """``(rows, columns)`` a frame's codestream declares, read from its header only.

    JPEG and JPEG-LS: the Start Of Frame segment (ITU-T T.81 B.2.2, T.87); JPEG 2000: the SIZ
    segment after SOC (ITU-T T.800 A.5.1, image size minus image offset). ``None`` when ``data``
    starts with no codestream this function knows (RLE, a JP2 box).

    Decoders allocate what the header declares, so a 1 KB frame can ask for gigabytes: the size
    is compared with Rows and Columns before any frame is decoded.

    Raises
    ------
    CodestreamSize
        A JPEG stream with no frame header before its scan data (or within ``data``).
    """
    if data.startswith(b"\xff\x4f\xff\x51"):
        if len(data) < 24:
            raise CodestreamSize("JPEG 2000 SIZ segment truncated")
        xsiz, ysiz, xo, yo = struct.unpack(">4I", data[8:24])
        return ysiz - yo, xsiz - xo
    if not data.startswith(b"\xff\xd8"):
        return None
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            raise CodestreamSize(f"JPEG marker expected at byte {i}")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _NO_LENGTH:
            i += 2
            continue
        if marker == 0xDA or marker == 0xD9:  # scan data (or the end) before any frame header
            break
        length = int.from_bytes(data[i + 2:i + 4], "big")
        if marker in JPEG_SOF:
            if i + 9 > n or length < 8:
                break
            rows, columns = struct.unpack(">HH", data[i + 5:i + 9])
            return rows, columns
        if length < 2:
            raise CodestreamSize(f"JPEG segment 0xFF{marker:02X} has length {length}")
        i += 2 + length
    raise CodestreamSize("no JPEG frame header (SOF) before the scan data")


def encapsulated_with_offsets(offsets: Sequence[int], items: bytes) -> bytes:
    """A Pixel Data value: a Basic Offset Table holding ``offsets``, then the fragment ``items``
    (item tags and data, as read) unchanged (PS3.5 A.4)."""
    table = struct.pack(f"<{len(offsets)}I", *offsets)
    return struct.pack("<HHI", 0xFFFE, 0xE000, len(table)) + table + items
