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
