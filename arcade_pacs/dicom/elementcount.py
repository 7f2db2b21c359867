"""Count a data set's elements without parsing it (an element-count bomb guard).

pydicom keeps every element it reads as a Python object of a few hundred bytes, so a file of
eight-byte empty elements costs about 40 times its size in memory (1 million elements in a
7.6 MB file: +310 MB). :func:`count_elements` walks the element headers of a Part 10 file
(PS3.5 7.1-7.5: explicit and implicit VR little endian, sequences of defined and undefined
length, encapsulated Pixel Data) with constant memory and stops past a limit, so receipt can
refuse such a file before anything parses it.
"""

from __future__ import annotations

import struct
from typing import BinaryIO

LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
"""VRs with a 2-byte reserved field and a 4-byte length in explicit VR (PS3.5 Table 7.1-1)."""
UNDEFINED = 0xFFFFFFFF
ITEM, ITEM_END, SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
PIXEL_DATA = 0x7FE00010


class TooManyElements(ValueError):
    """More elements than allowed."""


class ElementHeaderError(ValueError):
    """Element headers that cannot be walked (an undefined length where none is allowed)."""


def _is_sq(tag: int) -> bool:
    from pydicom.datadict import dictionary_VR

    try:
        return dictionary_VR(tag) == "SQ"
    except KeyError:
        return False


def count_elements(fp: BinaryIO, start: int, end: int, implicit: bool, limit: int, little: bool = True) -> int:
    """Number of data elements (nested ones included) from ``start`` to ``end`` of ``fp``
    (``little``: little endian, else the retired Explicit VR Big Endian).

    Raises
    ------
    TooManyElements
        Past ``limit`` elements.
    ElementHeaderError
        An undefined length on an element that is not a sequence.
    """
    u16, u32 = ("<H", "<I") if little else (">H", ">I")
    count = 0
    pos = start
    # Each open sequence: (implicit VR inside, end position or None for undefined length).
    stack: list[tuple[bool, int | None]] = []
    mode = implicit

    def read(n: int) -> bytes:
        fp.seek(pos)
        return fp.read(n)

    while pos + 8 <= end:
        while stack and stack[-1][1] is not None and pos >= stack[-1][1]:  # defined-length sequence ends
            stack.pop()
            mode = stack[-1][0] if stack else implicit
        head = read(12)
        if len(head) < 8:
            break
        tag = (struct.unpack(u16, head[0:2])[0] << 16) | struct.unpack(u16, head[2:4])[0]
        if tag >> 16 == 0xFFFE:  # items and delimiters: no VR, 4-byte length
            pos += 8
            if tag == SEQUENCE_END and stack:
                stack.pop()
                mode = stack[-1][0] if stack else implicit
            continue
        count += 1
        if count > limit:
            raise TooManyElements(f"more than {limit} data elements")
        if mode:
            vr, length, header = None, struct.unpack(u32, head[4:8])[0], 8
        else:
            vr = head[4:6]
            if vr in LONG_VRS:
                if len(head) < 12:
                    break
                length, header = struct.unpack(u32, head[8:12])[0], 12
            else:
                length, header = struct.unpack(u16, head[6:8])[0], 8
        pos += header
        sequence = vr == b"SQ" or (vr == b"UN" and length == UNDEFINED) or (vr is None and _is_sq(tag))
        if tag == PIXEL_DATA and length == UNDEFINED:  # encapsulated: fragments are not elements
            while pos + 8 <= end:
                item = read(8)
                item_tag = (struct.unpack(u16, item[0:2])[0] << 16) | struct.unpack(u16, item[2:4])[0]
                item_length = struct.unpack(u32, item[4:8])[0]
                pos += 8
                if item_tag == SEQUENCE_END:
                    break
                pos += item_length
        elif sequence:
            # Undefined-length UN holds an implicit VR sequence (PS3.5 6.2.2); SQ keeps the mode.
            inner = True if vr == b"UN" else mode
            stack.append((inner, None if length == UNDEFINED else pos + length))
            mode = inner
        elif length == UNDEFINED:
            raise ElementHeaderError(f"undefined length on a non-sequence element ({tag >> 16:04X},{tag & 0xFFFF:04X})")
        else:
            pos += length
    return count
