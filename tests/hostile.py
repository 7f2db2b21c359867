"""Malformed and hostile inputs, generated from real pixels, for the SCP and the frame decoder.

:func:`dataset_cases` returns C-STORE payloads (a valid File Meta header that picks the
presentation context, then a data set body of any bytes): truncated files, wrong VRs, absurd
lengths and dimensions, short pixel data, non-DICOM bytes, huge frame counts, broken and
forged compressed frames, decompression bombs. :func:`network_cases` returns raw-socket
attacks on the association layer (truncated and oversized PDUs, garbage, aborts mid-C-STORE).

Every data set carries canary patient attributes (:data:`CANARIES`): none may reach a log.
"""

from __future__ import annotations

import io
import random
import socket
import struct
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.encaps import generate_fragments, parse_basic_offsets
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    RLELossless,
    generate_uid,
)

from tests.factory import encapsulated, real_frame, xa_dataset

XA = "1.2.840.10008.5.1.4.1.1.12.1"
CANARIES = ("Canary^Phi", "PHI-CANARY-7", "19010203", "CANARY-ACC", "Dr^Canary")
"""Patient/study values planted in every hostile data set; a log line holding one is a leak."""


@dataclass
class Case:
    """One hostile C-STORE: ``body`` is sent byte for byte after a File Meta header."""

    name: str
    category: str
    body: bytes
    transfer_syntax: str = ExplicitVRLittleEndian
    sop_class: str = XA
    sop_instance: str = field(default_factory=generate_uid)

    def write(self, folder: Path) -> Path:
        """A Part 10 file: preamble, File Meta Information (valid), then ``body`` as it is."""
        meta = pydicom.dataset.FileMetaDataset()
        meta.MediaStorageSOPClassUID = self.sop_class
        meta.MediaStorageSOPInstanceUID = self.sop_instance
        meta.TransferSyntaxUID = self.transfer_syntax
        buffer = io.BytesIO()
        buffer.write(b"\x00" * 128 + b"DICM")
        write_file_meta_info(buffer, meta)
        path = Path(folder) / f"{len(list(Path(folder).iterdir())):04d}.dcm"
        path.write_bytes(buffer.getvalue() + self.body)
        return path


def _canaries(ds: Dataset) -> Dataset:
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.AccessionNumber, ds.ReferringPhysicianName = CANARIES
    return ds


def encode(ds: Dataset, implicit: bool = False) -> bytes:
    """The data set body (no File Meta), Explicit (or Implicit) VR Little Endian."""
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, implicit
    write_dataset(buffer, ds)
    return buffer.getvalue()


def native_base(rubo: Path, frames: int = 3, size: int = 96) -> Dataset:
    """A small native XA cine cut from real Rubo frames (96x96, 3 frames, 8 bit)."""
    pixels = np.stack([real_frame(rubo, 30 + 10 * i)[200:200 + size, 200:200 + size] for i in range(frames)])
    return _canaries(xa_dataset(pixels))


def jpeg_base(rubo: Path, frames: int = 4) -> tuple[Dataset, list[bytes]]:
    """The real Rubo JPEG cine cut to its first ``frames`` fragments (and its fragments)."""
    ds = pydicom.dcmread(rubo)
    buffer = DicomBytesIO(ds.PixelData)
    buffer.is_little_endian = True
    parse_basic_offsets(buffer)
    fragments = [f for _, f in zip(range(frames), generate_fragments(buffer), strict=False)]
    ds.PixelData = encapsulated(fragments)
    ds["PixelData"].is_undefined_length = True
    ds.NumberOfFrames = frames
    ds.SOPInstanceUID = generate_uid()
    return _canaries(ds), fragments


def elements(body: bytes) -> list[tuple[int, int, bytes, int, int]]:
    """Top-level elements of an Explicit VR LE body: (tag, offset, VR, header length, value length)."""
    out, i = [], 0
    while i + 8 <= len(body):
        group, element = struct.unpack("<HH", body[i:i + 4])
        vr = body[i + 4:i + 6]
        if vr in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN", b"UC", b"UR", b"OD", b"OL", b"OV"):
            (length,) = struct.unpack("<I", body[i + 8:i + 12])
            header = 12
        else:
            (length,) = struct.unpack("<H", body[i + 6:i + 8])
            header = 8
        out.append(((group << 16) | element, i, vr, header, length))
        if length == 0xFFFFFFFF:
            break  # undefined length (pixel data last): stop here
        i += header + length
    return out


def _find(body: bytes, tag: int):
    return next(e for e in elements(body) if e[0] == tag)


def _with(ds: Dataset, **changes) -> Dataset:
    """A copy of ``ds`` with new values; a value pydicom would refuse is written as raw bytes."""
    import copy

    from pydicom.datadict import dictionary_VR, tag_for_keyword
    from pydicom.dataelem import RawDataElement

    ds = copy.deepcopy(ds)  # same SOP Instance UID: dataset_cases gives each case its own at the end
    for keyword, value in changes.items():
        if value is None:
            if keyword in ds:
                delattr(ds, keyword)
            continue
        try:
            setattr(ds, keyword, value)
            encode(Dataset({ds[keyword].tag: ds[keyword]}))  # can pydicom write it?
        except (ValueError, TypeError, OverflowError, OSError, struct.error):
            tag = tag_for_keyword(keyword)
            raw = str(value).encode("latin-1")
            raw += b" " * (len(raw) % 2)
            ds._dict[pydicom.tag.Tag(tag)] = RawDataElement(
                pydicom.tag.Tag(tag), dictionary_VR(tag), len(raw), raw, 0, False, True)
    return ds


TAGS = {
    "Rows": 0x00280010, "Columns": 0x00280011, "NumberOfFrames": 0x00280008, "BitsAllocated": 0x00280100,
    "BitsStored": 0x00280101, "PhotometricInterpretation": 0x00280004, "SOPClassUID": 0x00080016,
    "SOPInstanceUID": 0x00080018, "StudyInstanceUID": 0x0020000D, "SeriesInstanceUID": 0x0020000E,
    "SamplesPerPixel": 0x00280002, "PixelRepresentation": 0x00280103, "PatientName": 0x00100010,
    "PatientBirthDate": 0x00100030, "Modality": 0x00080060, "PixelData": 0x7FE00010,
}


def dataset_cases(rubo: Path, seed: int = 0) -> list[Case]:
    """All hostile C-STORE payloads (well over 200), deterministic for ``seed``."""
    rng = random.Random(seed)
    native = native_base(rubo)
    body = encode(native)
    jpeg, fragments = jpeg_base(rubo)
    jbody = encode(jpeg)
    cases: list[Case] = [Case("sound native cine (control)", "control", body),
                         Case("sound JPEG cine (control)", "control", jbody, JPEGBaseline8Bit)]

    # Truncated files: cut at header boundaries, inside elements and inside the pixel data.
    for cut in sorted(rng.sample(range(1, len(body) - 1), 14)) + [8, 100]:
        cases.append(Case(f"native truncated at byte {cut}", "truncated file", body[:cut]))
    for cut in sorted(rng.sample(range(len(jbody) - 60000, len(jbody) - 1), 10)) + [400, 2000]:
        cases.append(Case(f"JPEG truncated at byte {cut}", "truncated file", jbody[:cut], JPEGBaseline8Bit))

    # Wrong VRs: the VR bytes of an element replaced (the rest of the data set then misparses).
    for keyword, tag in TAGS.items():
        _, offset, vr, _, _ = _find(body, tag)
        for wrong in (b"XX", b"SQ", b"FD") if keyword in ("Rows", "NumberOfFrames", "PixelData") else (b"XX", b"UN"):
            if wrong == vr:
                continue
            mutated = body[:offset + 4] + wrong + body[offset + 6:]
            cases.append(Case(f"VR of {keyword} {vr.decode()} -> {wrong.decode(errors='replace')}", "wrong VR", mutated))
    # Valid encodings of values of the wrong kind (a text where a number must be).
    for keyword, value in (("Rows", "abc"), ("Columns", "1.5"), ("BitsAllocated", "x")):
        ds = _with(native)
        ds[TAGS[keyword]].VR = "LO"
        ds[TAGS[keyword]].value = value
        cases.append(Case(f"{keyword} as LO {value!r}", "wrong VR", encode(ds)))

    # Absurd lengths: element length fields past the end, huge, odd.
    for keyword, tag in TAGS.items():
        _, offset, vr, header, _ = _find(body, tag)
        choices = (0xFFFF, 0xFFFD) if header == 8 else (0xFFFFFFF0, 0x7FFFFFFF, 0x0000FFFF + 1)
        for length in choices:
            packed = struct.pack("<H", length) if header == 8 else struct.pack("<I", length)
            start = offset + (6 if header == 8 else 8)
            mutated = body[:start] + packed + body[start + len(packed):]
            cases.append(Case(f"length of {keyword} = {length:#x}", "absurd length", mutated))
    offset = jbody.rindex(b"\xe0\x7f\x10\x00OB\x00\x00\xff\xff\xff\xff")  # Pixel Data, undefined length
    item = offset + 12  # the Basic Offset Table item
    for length in (0xFFFFFFF0, 0x7FFFFFFF, 3):
        mutated = jbody[:item + 4] + struct.pack("<I", length) + jbody[item + 8:]
        cases.append(Case(f"JPEG offset-table item length {length:#x}", "absurd length", mutated, JPEGBaseline8Bit))
        first = item + 8 + 0  # first fragment item after an empty table
        mutated = jbody[:first + 4] + struct.pack("<I", length) + jbody[first + 8:]
        cases.append(Case(f"JPEG first fragment length {length:#x}", "absurd length", mutated, JPEGBaseline8Bit))

    # Absurd dimensions and image attributes (validly encoded).
    for changes in (
        {"Rows": 0}, {"Rows": 1}, {"Rows": 65535}, {"Columns": 0}, {"Columns": 65535},
        {"Rows": 65535, "Columns": 65535}, {"Rows": None}, {"Columns": None},
        {"NumberOfFrames": "0"}, {"NumberOfFrames": "-1"}, {"NumberOfFrames": "abc"},
        {"NumberOfFrames": "2147483647"}, {"NumberOfFrames": "3.5"}, {"NumberOfFrames": "1e9"},
        {"BitsAllocated": 0}, {"BitsAllocated": 1}, {"BitsAllocated": 7}, {"BitsAllocated": 12},
        {"BitsAllocated": 32}, {"BitsAllocated": 64}, {"BitsStored": 0}, {"BitsStored": 17}, {"BitsStored": 40},
        {"HighBit": 99}, {"SamplesPerPixel": 0}, {"SamplesPerPixel": 3}, {"SamplesPerPixel": 4},
        {"PixelRepresentation": 1}, {"PixelRepresentation": 7},
        {"PhotometricInterpretation": "RGB"}, {"PhotometricInterpretation": "YBR_FULL"},
        {"PhotometricInterpretation": "PALETTE COLOR"}, {"PhotometricInterpretation": ""},
        {"PhotometricInterpretation": "MONOCHROME3"}, {"PhotometricInterpretation": None},
        {"RescaleSlope": "0"}, {"RescaleSlope": "nan"}, {"RescaleSlope": "inf"}, {"RescaleSlope": "1e308"},
        {"RescaleIntercept": "-1e308"}, {"WindowCenter": "inf", "WindowWidth": "10"},
        {"WindowCenter": "100", "WindowWidth": "0"}, {"WindowCenter": "100", "WindowWidth": "-5"},
        {"WindowCenter": "nan", "WindowWidth": "nan"}, {"PixelPaddingValue": 70000},
        {"ShutterShape": "CIRCULAR", "CenterOfCircularShutter": [48, 48], "RadiusOfCircularShutter": 10**9},
        {"ShutterShape": "RECTANGULAR", "ShutterLeftVerticalEdge": -5, "ShutterRightVerticalEdge": 10**6,
         "ShutterUpperHorizontalEdge": 10**6, "ShutterLowerHorizontalEdge": -10**6},
        {"ShutterShape": "POLYGONAL", "VerticesOfThePolygonalShutter": [1, 1] * 5000},
        {"ShutterShape": "POLYGONAL", "VerticesOfThePolygonalShutter": [5]},
        {"SOPInstanceUID": "1.2.abc"}, {"SOPInstanceUID": "1." + "2" * 80}, {"StudyInstanceUID": None},
        {"SeriesInstanceUID": ""}, {"SOPClassUID": "1.2.840.10008.5.1.4.1.1.2"}, {"SOPClassUID": None},
        {"Modality": "\x00\x01\x02"}, {"PatientName": "\xff\xfe" * 10}, {"SpecificCharacterSet": "ISO_IR 999"},
    ):
        ds = _with(native, **changes)
        name = ", ".join(f"{k}={str(v)[:24]!r}" for k, v in changes.items())
        cases.append(Case(name, "absurd dimensions and attributes", encode(ds)))
    for descriptor, data in (([0, 0, 16], [1, 2]), ([65535, 0, 99], [0] * 4), ([4, 0, 16], [])):
        lut = Dataset()
        lut.add_new(0x00283002, "US", descriptor)  # LUT Descriptor
        lut.add_new(0x00283006, "OW", struct.pack(f"<{len(data)}H", *data))  # LUT Data
        for keyword in ("ModalityLUTSequence", "VOILUTSequence"):
            ds = _with(native)
            setattr(ds, keyword, [lut])
            cases.append(Case(f"{keyword} descriptor {descriptor}", "absurd dimensions and attributes", encode(ds)))
    deep = Dataset()
    for _ in range(3000):  # sequence nesting 3000 deep
        outer = Dataset()
        outer.ReferencedImageSequence = [deep]
        deep = outer
    ds = _with(native)
    ds.ReferencedImageSequence = [deep]
    try:
        cases.append(Case("sequence nested 3000 deep", "absurd dimensions and attributes", encode(ds)))
    except RecursionError:
        pass

    # Short pixel data.
    frame = 96 * 96
    for size, label in ((0, "empty"), (1, "1 byte"), (frame // 2, "half a frame"), (3 * frame - 1000, "1000 short"),
                        (3 * frame - 1, "one byte short, odd"), (2 * frame, "one frame short")):
        cases.append(Case(f"native Pixel Data {label}", "short pixel data", encode(_with(native, PixelData=native.PixelData[:size]))))
    for label, frags in (
        ("no fragments", []), ("empty fragments", [b""] * 4), ("fragments cut to 100 bytes", [f[:100] for f in fragments]),
        ("fragments cut in half", [f[: len(f) // 2 & ~1] for f in fragments]), ("2 of 4 fragments", fragments[:2]),
        ("SOI only", [b"\xff\xd8"] * 4), ("EOI missing", [f[: f.rindex(b"\xff\xd9")] for f in fragments]),
    ):
        ds = _with(jpeg)
        ds.PixelData = encapsulated(frags)
        cases.append(Case(f"JPEG {label}", "short pixel data", encode(ds), JPEGBaseline8Bit))
    ds = _with(jpeg)
    ds.PixelData = encapsulated(fragments, [0, 10**9, 2 * 10**9, 3 * 10**9])
    cases.append(Case("JPEG offset table pointing past the end", "short pixel data", encode(ds), JPEGBaseline8Bit))

    # Non-DICOM bytes where the data set should be.
    png = b"\x89PNG\r\n\x1a\n" + bytes(rng.getrandbits(8) for _ in range(2000))
    for label, payload in (
        ("zeros 64 KB", bytes(65536)), ("0xFF 64 KB", b"\xff" * 65536), ("text", b"this is not a DICOM data set\n" * 200),
        ("PNG", png), ("JSON", b'{"patient": "nobody", "a": [1,2,3]}' * 50), ("PDF", b"%PDF-1.4\n" + bytes(3000)),
        ("HTML", b"<html><body>hello</body></html>" * 100), ("a second File Meta header", b"\x00" * 128 + b"DICM" + body[:300]),
        ("one byte", b"\x08"), ("empty", b""),
        ("zlib stream", zlib.compress(body)),
    ):
        cases.append(Case(f"non-DICOM: {label}", "non-DICOM bytes", payload))
    for k in range(8):
        size = rng.choice((16, 1000, 40000, 300000))
        cases.append(Case(f"random bytes #{k} ({size} B)", "non-DICOM bytes", rng.randbytes(size)))
    cases.append(Case("Implicit VR body under an Explicit VR context", "non-DICOM bytes", encode(native, implicit=True)))
    cases.append(Case("Explicit VR body under an Implicit VR context", "non-DICOM bytes", body, ImplicitVRLittleEndian))
    cases.append(Case("raw (not deflated) body under the Deflated context", "non-DICOM bytes", body,
                      DeflatedExplicitVRLittleEndian))
    cases.append(Case("JPEG body under RLE Lossless", "non-DICOM bytes", jbody, RLELossless))

    # Huge frame counts.
    for frames in ("2000", "2001", "100000", "4294967295"):
        cases.append(Case(f"native with Number of Frames {frames}", "huge frame count", encode(_with(native, NumberOfFrames=frames))))
        cases.append(Case(f"JPEG with Number of Frames {frames}", "huge frame count",
                          encode(_with(jpeg, NumberOfFrames=frames)), JPEGBaseline8Bit))

    # Broken and forged compressed frames.
    for k in range(12):
        flipped = []
        for f in fragments:
            b = bytearray(f)
            for _ in range(rng.choice((1, 10, 200))):
                b[rng.randrange(2, len(b))] ^= 1 << rng.randrange(8)
            flipped.append(bytes(b))
        ds = _with(jpeg)
        ds.PixelData = encapsulated(flipped)
        cases.append(Case(f"JPEG with flipped bits #{k}", "corrupt compressed frames", encode(ds), JPEGBaseline8Bit))
    for rows, cols in ((60000, 60000), (65535, 1), (1, 65535), (0, 512), (1024, 1024)):
        forged = []
        for f in fragments:
            i = f.index(b"\xff\xc0")
            forged.append(f[:i + 5] + struct.pack(">HH", rows, cols) + f[i + 9:])
        ds = _with(jpeg)
        ds.PixelData = encapsulated(forged)
        cases.append(Case(f"JPEG frame header forged to {rows}x{cols}", "decompression bomb", encode(ds), JPEGBaseline8Bit))
    ds = _with(jpeg)
    ds.PixelData = encapsulated([b"\xff\xd8" + rng.randbytes(5000) for _ in range(4)])
    cases.append(Case("JPEG fragments of random bytes after SOI", "corrupt compressed frames", encode(ds), JPEGBaseline8Bit))
    ds = _with(jpeg)
    ds.PixelData = b"\xfe\xff\x00\xe0\x00\x00\x00\x00" + b"\x00\xfe\xff\x00" * 10  # items of garbage
    cases.append(Case("JPEG items with garbage tags", "corrupt compressed frames", encode(ds), JPEGBaseline8Bit))
    rle = _with(native)
    rle.PixelData = encapsulated([struct.pack("<16I", 15, *([64] * 15)) + bytes(100)] * 3)
    rle["PixelData"].VR = "OB"
    rle["PixelData"].is_undefined_length = True
    cases.append(Case("RLE with 15 segments of nothing", "corrupt compressed frames", encode(rle), RLELossless))
    rle.PixelData = encapsulated([struct.pack("<16I", 1, 64, *([0] * 14)) + b"\x81\x00" * 50000] * 3)  # run-length bomb
    cases.append(Case("RLE run-length expansion past the frame", "decompression bomb", encode(rle), RLELossless))

    # Element-count bombs: empty elements cost pydicom ~300 bytes of memory each.
    for count, nested in ((1_000_000, False), (600_000, True)):
        empties = b"".join(struct.pack("<HH2sH", 0x0011 + 2 * (k // 0xE000), 0x1000 + k % 0xE000, b"SH", 0)
                           for k in range(count))
        if nested:  # inside one item of an undefined-length sequence
            empties = (struct.pack("<HH2sHI", 0x0008, 0x1140, b"SQ", 0, 0xFFFFFFFF) + struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
                       + empties.replace(b"\x11\x00", b"\x09\x00") + struct.pack("<HHI", 0xFFFE, 0xE00D, 0)
                       + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0))
        head = encode(_with(native, PixelData=None))
        cut = next(off for tag, off, *_ in elements(head) if tag > (0x0008_1140 if nested else 0x0011_FFFF))
        cases.append(Case(f"{count} empty elements{' in a sequence' if nested else ''}", "element-count bomb",
                          head[:cut] + empties + head[cut:] + encode(Dataset({pydicom.tag.Tag(0x7FE00010): native["PixelData"]}))))

    # Deflate bombs: small on the wire, huge once inflated.
    for inflated in (300 * 2**20, 1 * 2**30):
        deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
        head = encode(_with(native, PixelData=None))
        stream = [deflater.compress(head), deflater.compress(struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OB", 0, inflated))]
        zeros = bytes(1 << 20)
        for _ in range(inflated >> 20):
            stream.append(deflater.compress(zeros))
        stream.append(deflater.flush())
        cases.append(Case(f"deflate bomb ({inflated >> 20} MB inflated)", "decompression bomb", b"".join(stream),
                          DeflatedExplicitVRLittleEndian))
    cases.append(Case("corrupt deflate stream", "decompression bomb", b"\x78\x9c" + rng.randbytes(5000),
                      DeflatedExplicitVRLittleEndian))
    # One SOP Instance UID per case (same length, so every offset and length above still holds),
    # so that a stored case is never replaced by the next one.
    for case in cases:
        for base in {str(native.SOPInstanceUID), str(jpeg.SOPInstanceUID)}:
            old = base.encode()
            if old in case.body:
                new = _same_length_uid(len(old), rng)
                case.body = case.body.replace(old, new.encode())
                case.sop_instance = new
    return cases


def _same_length_uid(length: int, rng: random.Random) -> str:
    """A UUID-derived UID (2.25.<n>, PS3.5 B.2) of exactly ``length`` characters."""
    digits = length - 5
    return f"2.25.{rng.randrange(10 ** (digits - 1), 10 ** digits)}"


# --- the association layer ---------------------------------------------------------------------

def _associate_rq(calling: str = "MODALITY", called: str = "ARCADE") -> bytes:
    """A well-formed A-ASSOCIATE-RQ PDU proposing Verification and XA (Explicit VR LE)."""
    from pynetdicom.pdu import A_ASSOCIATE_RQ
    from pynetdicom.pdu_primitives import A_ASSOCIATE, MaximumLengthNotification
    from pynetdicom.presentation import build_context

    primitive = A_ASSOCIATE()
    primitive.application_context_name = "1.2.840.10008.3.1.1.1"
    primitive.calling_ae_title, primitive.called_ae_title = calling, called
    from pynetdicom.transport import AddressInformation

    primitive.calling_presentation_address = AddressInformation("127.0.0.1", 0)
    primitive.called_presentation_address = AddressInformation("127.0.0.1", 11112)
    contexts = [build_context("1.2.840.10008.1.1"), build_context(XA, ExplicitVRLittleEndian)]
    for n, cx in enumerate(contexts):
        cx.context_id = 2 * n + 1
    primitive.presentation_context_definition_list = contexts
    max_length = MaximumLengthNotification()
    max_length.maximum_length_received = 16384
    from pynetdicom.pdu_primitives import ImplementationClassUIDNotification

    impl = ImplementationClassUIDNotification()
    impl.implementation_class_uid = "1.2.826.0.1.3680043.9.3811.3.0.4"
    primitive.user_information = [max_length, impl]
    pdu = A_ASSOCIATE_RQ()
    pdu.from_primitive(primitive)
    return pdu.encode()


def _store_pdus(body: bytes, context_id: int = 3) -> list[bytes]:
    """The P-DATA-TF PDUs of a C-STORE-RQ carrying ``body`` (XA, Explicit VR LE)."""
    from pynetdicom.dimse_messages import C_STORE_RQ
    from pynetdicom.dimse_primitives import C_STORE
    from pynetdicom.pdu import P_DATA_TF

    primitive = C_STORE()
    primitive.MessageID = 1
    primitive.AffectedSOPClassUID = XA
    primitive.AffectedSOPInstanceUID = generate_uid()
    primitive.Priority = 2
    primitive.DataSet = io.BytesIO(body)
    message = C_STORE_RQ()
    message.primitive_to_message(primitive)
    out = []
    for p_data in message.encode_msg(context_id, 16384):
        pdu = P_DATA_TF()
        pdu.from_primitive(p_data)
        out.append(pdu.encode())
    return out


def _read_pdu(sock: socket.socket, timeout: float) -> bytes | None:
    sock.settimeout(timeout)
    try:
        head = b""
        while len(head) < 6:
            chunk = sock.recv(6 - len(head))
            if not chunk:
                return None
            head += chunk
        length = struct.unpack(">I", head[2:6])[0]
        data = b""
        while len(data) < length:
            chunk = sock.recv(min(65536, length - len(data)))
            if not chunk:
                return None
            data += chunk
        return head + data
    except (OSError, TimeoutError):
        return None


def _closed(sock: socket.socket, timeout: float) -> bool:
    """Whether the peer closes (or aborts) the connection within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pdu = _read_pdu(sock, max(0.1, deadline - time.monotonic()))
        if pdu is None or pdu[0] == 0x07:  # closed, or A-ABORT
            return True
    return False


@dataclass
class NetworkCase:
    """A raw-socket attack; ``run(port)`` returns the observed outcome as one word."""

    name: str
    category: str
    steps: list  # bytes to send, or ("associate",), ("sleep", s), ("close",)
    expect: str = "closed"  # closed | rejected | aborted


def network_cases(body: bytes, seed: int = 0) -> list[NetworkCase]:
    rng = random.Random(seed)
    rq = _associate_rq()
    store = _store_pdus(body)
    cases = [
        NetworkCase("HTTP request", "non-DICOM bytes", [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"]),
        NetworkCase("TLS ClientHello to the plain port", "non-DICOM bytes", [bytes.fromhex("160301002e010000") + rng.randbytes(46)]),
        NetworkCase("unknown PDU type 0x09", "truncated or invalid PDU", [b"\x09\x00\x00\x00\x00\x04abcd"]),
        NetworkCase("P-DATA-TF before any association", "truncated or invalid PDU", store[:1]),
        NetworkCase("A-RELEASE-RQ before any association", "truncated or invalid PDU", [b"\x05\x00\x00\x00\x00\x04\x00\x00\x00\x00"]),
        NetworkCase("A-ASSOCIATE-RQ declaring 4 GB", "oversized PDU", [b"\x01\x00\xff\xff\xff\xff" + bytes(10000)]),
        NetworkCase("A-ASSOCIATE-RQ declaring 2 MB", "oversized PDU", [b"\x01\x00" + (2 << 20).to_bytes(4, "big") + bytes(10000)]),
        NetworkCase("A-ASSOCIATE-RQ with a garbage body", "truncated or invalid PDU", [rq[:6] + rng.randbytes(len(rq) - 6)]),
        NetworkCase("A-ASSOCIATE-RQ, wrong called AE", "truncated or invalid PDU", [_associate_rq(called="NOBODY")], "rejected"),
        NetworkCase("A-ASSOCIATE-RQ, unknown calling AE", "truncated or invalid PDU", [_associate_rq(calling="INTRUDER")], "rejected"),
        NetworkCase("association, then a P-DATA-TF of 1 GB", "oversized PDU", [("associate",), b"\x04\x00" + (1 << 30).to_bytes(4, "big") + bytes(8192)]),
        NetworkCase("association, then P-DATA with a garbage PDV", "truncated or invalid PDU", [("associate",), b"\x04\x00\x00\x00\x00\x10" + rng.randbytes(16)], "aborted"),
        NetworkCase("association, then a PDV on an unknown context", "truncated or invalid PDU", [("associate",), b"\x04\x00\x00\x00\x00\x0a\x00\x00\x00\x06\xff\x03" + bytes(4)], "aborted"),
        NetworkCase("association, then an A-ASSOCIATE-RQ again", "truncated or invalid PDU", [("associate",), rq], "aborted"),
    ]
    for cut in (1, 6, 40, len(rq) // 2, len(rq) - 1):
        cases.append(NetworkCase(f"A-ASSOCIATE-RQ truncated to {cut} bytes, then closed", "truncated or invalid PDU", [rq[:cut], ("close",)]))
    for k in range(6):
        cases.append(NetworkCase(f"random bytes #{k}", "non-DICOM bytes", [rng.randbytes(rng.choice((1, 7, 500, 20000)))]))
    half = max(1, len(store) // 2)
    cases += [
        NetworkCase("C-STORE cut mid-data set, connection closed", "aborted C-STORE", [("associate",), *store[:half], ("close",)]),
        NetworkCase("C-STORE cut mid-data set, A-ABORT", "aborted C-STORE", [("associate",), *store[:half], b"\x07\x00\x00\x00\x00\x04\x00\x00\x00\x00"]),
        NetworkCase("C-STORE cut mid-PDU, connection closed", "aborted C-STORE", [("associate",), store[0], store[1][: len(store[1]) // 2], ("close",)]),
        NetworkCase("C-STORE command only, then silence", "aborted C-STORE", [("associate",), store[0], ("close",)]),
    ]
    return cases


def run_network_case(case: NetworkCase, port: int, timeout: float = 15.0) -> str:
    """Play ``case`` against the SCP; the outcome: closed, rejected, aborted, or 'open' (undefined)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        for step in case.steps:
            if isinstance(step, tuple) and step[0] == "associate":
                sock.sendall(_associate_rq())
                answer = _read_pdu(sock, 10)
                if answer is None or answer[0] != 0x02:
                    return "association not accepted"
            elif isinstance(step, tuple) and step[0] == "close":
                return "closed by us"
            else:
                try:
                    sock.sendall(step)
                except OSError:
                    return "closed"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pdu = _read_pdu(sock, max(0.1, deadline - time.monotonic()))
            if pdu is None:
                return "closed"
            if pdu[0] == 0x03:
                return "rejected"
            if pdu[0] == 0x07:
                return "aborted"
        return "open"
    finally:
        sock.close()
