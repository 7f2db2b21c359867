"""Synthetic DICOM instances built in the tests from real pixels (edge cases the samples lack)."""

from __future__ import annotations

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, XRayAngiographicImageStorage, generate_uid


def xa_dataset(
    pixels: np.ndarray,
    bits_stored: int = 8,
    photometric: str = "MONOCHROME2",
    study_uid: str | None = None,
    sop_class: str = XRayAngiographicImageStorage,
    **attributes,
) -> Dataset:
    """An uncompressed XA instance holding ``pixels`` (``(T, H, W)`` or ``(H, W)``)."""
    pixels = np.asarray(pixels)
    if pixels.ndim == 2:
        pixels = pixels[None]
    frames, rows, cols = pixels.shape
    allocated = 8 if bits_stored <= 8 else 16
    dtype = np.uint8 if allocated == 8 else np.uint16
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientName = "Test^Synthetic"
    ds.PatientID = "SYN001"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyDate = "20260101"
    ds.StudyTime = "120000"
    ds.AccessionNumber = "ACC1"
    ds.ReferringPhysicianName = ""
    ds.StudyID = "1"
    ds.Modality = "XA"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.Rows, ds.Columns = rows, cols
    if frames > 1:
        ds.NumberOfFrames = frames
        ds.FrameIncrementPointer = pydicom.tag.Tag("FrameTime")
        ds.FrameTime = 33.3
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = allocated
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    ds.PixelData = pixels.astype(dtype).tobytes()
    for key, value in attributes.items():
        setattr(ds, key, value)
    return ds


def real_frame(path, index: int = 0) -> np.ndarray:
    """One 8-bit frame of a real sample file."""
    from pydicom.pixels import pixel_array

    return pixel_array(pydicom.dcmread(path), index=index)


def _item(data: bytes) -> bytes:
    """One encapsulated item (FFFE,E000) holding ``data`` exactly as given (odd lengths kept)."""
    import struct

    return struct.pack("<HHI", 0xFFFE, 0xE000, len(data)) + data


def encapsulated(fragments: list[bytes], offsets: list[int] | None = None) -> bytes:
    """An encapsulated Pixel Data value (PS3.5 A.4): a Basic Offset Table item, then one item per
    fragment, written byte for byte (no padding), so a test can build what a faulty writer does."""
    import struct

    table = b"".join(struct.pack("<I", o) for o in (offsets or []))
    return _item(table) + b"".join(_item(f) for f in fragments)


def odd_fragment_cine(source, out, pad: bool = False):
    """The Rubo JPEG cine rewritten the way some modalities write it: every fragment cut to an
    odd length (the JPEG stream up to its EOI marker, plus one trailing byte when that length is
    even) and a
    Basic Offset Table that points at those odd-length items.

    With ``pad=True`` each fragment is padded to even length with a zero byte while the offset
    table is kept, which is what DCMTK's storescu and Orthanc deliver: the table then points 1,
    2, 3... bytes before the items it means (reading there gives "Unexpected tag (FE00,00FF)").
    Returns the path written.
    """
    from pydicom.encaps import generate_fragments, parse_basic_offsets
    from pydicom.filebase import DicomBytesIO

    ds = pydicom.dcmread(source)
    buffer = DicomBytesIO(ds.PixelData)
    buffer.is_little_endian = True
    parse_basic_offsets(buffer)
    odd = []
    for fragment in generate_fragments(buffer):
        end = fragment.rindex(b"\xff\xd9") + 2  # the JPEG End Of Image marker
        stream = fragment[:end] if end % 2 else fragment[: end + 1]
        odd.append(stream if len(stream) % 2 else stream + b"\x00")
    assert all(len(f) % 2 for f in odd)
    offsets, position = [], 0
    for fragment in odd:
        offsets.append(position)
        position += 8 + len(fragment)
    if pad:
        odd = [f + b"\x00" for f in odd]
    ds.PixelData = encapsulated(odd, offsets)
    ds["PixelData"].is_undefined_length = True
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(out, enforce_file_format=True)
    return out


def deflate_bomb(path, inflated_bytes: int, sop_class: str = XRayAngiographicImageStorage):
    """A Deflated Explicit VR Little Endian XA file (PS3.5 A.5) whose data set inflates to about
    ``inflated_bytes`` (a private OB element of zeros), while the file itself stays small.

    The deflate stream is written chunk by chunk, so the test never holds the inflated bytes.
    """
    import io
    import struct
    import zlib

    from pydicom.filewriter import write_dataset, write_file_meta_info
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    ds = xa_dataset(np.zeros((8, 8), np.uint8), sop_class=sop_class)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    pixels = ds.PixelData
    del ds.PixelData
    ds.add_new(0x00090010, "LO", "BOMB")
    header = pydicom.filebase.DicomBytesIO()
    header.is_little_endian, header.is_implicit_VR = True, False
    write_dataset(header, ds)
    blob = inflated_bytes - len(header.getvalue())
    blob -= blob % 2
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    with open(path, "wb") as out:
        out.write(b"\x00" * 128 + b"DICM")
        meta = io.BytesIO()
        write_file_meta_info(meta, ds.file_meta)
        out.write(meta.getvalue())
        out.write(deflater.compress(header.getvalue()))
        out.write(deflater.compress(struct.pack("<HH2sHI", 0x0009, 0x1000, b"OB", 0, blob)))
        zeros = bytes(1 << 20)
        for start in range(0, blob, len(zeros)):
            out.write(deflater.compress(zeros[: min(len(zeros), blob - start)]))
        out.write(deflater.compress(struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OB", 0, len(pixels)) + pixels))
        out.write(deflater.flush())
    return ds
