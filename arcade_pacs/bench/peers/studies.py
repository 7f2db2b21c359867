"""The studies the modality peer sends in the bench: XA cines made of the real Rubo angiogram's frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np

RUBO = "dicom/xa_rubo0002_cine96_jpegbaseline.dcm"


def rubo_frames(data_dir: Path, frames: int = 60) -> np.ndarray:
    """``frames`` consecutive 512x512 frames of the real Rubo cine around its contrast injection."""
    import pydicom

    pixels = pydicom.dcmread(Path(data_dir) / RUBO).pixel_array
    start = max(0, min(len(pixels) - frames, 18))
    return np.ascontiguousarray(pixels[start : start + frames])


def write_cine(pixels: np.ndarray, out: Path, study_uid: str, series_uid: str, number: int = 1) -> Path:
    """An uncompressed 8-bit XA cine of ``pixels`` ``(T, 512, 512)`` with fresh UIDs (PS3.3 A.14)."""
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, XRayAngiographicImageStorage, generate_uid

    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = XRayAngiographicImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
    ds.Modality = "XA"
    ds.PatientName, ds.PatientID = "Bench^Synthetic", "BENCH"
    ds.PatientBirthDate, ds.PatientSex = "19700101", "O"
    ds.StudyDate, ds.StudyTime = "20260101", "120000"
    ds.AccessionNumber, ds.ReferringPhysicianName, ds.StudyID = "", "", "1"
    ds.SeriesNumber, ds.InstanceNumber = number, 1
    ds.Rows, ds.Columns = int(pixels.shape[1]), int(pixels.shape[2])
    ds.NumberOfFrames = int(pixels.shape[0])
    ds.FrameIncrementPointer = pydicom.tag.Tag("FrameTime")
    ds.FrameTime = 66.7
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = pixels.astype(np.uint8).tobytes()
    ds.save_as(out, enforce_file_format=True)
    return out


def study_files(pixels: np.ndarray, folder: Path, runs: int) -> tuple[str, list[Path]]:
    """``runs`` cines of one new study, each its own series."""
    from pydicom.uid import generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    study = generate_uid()
    files = [write_cine(pixels, folder / f"run{i:02d}.dcm", study, generate_uid(), i + 1) for i in range(runs)]
    return study, files
