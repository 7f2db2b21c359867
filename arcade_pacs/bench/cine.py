"""Benchmarks (``arcade-pacs bench ...``): figures measured, never asserted in timed tests.

``bench cine`` answers: how much memory and time does the worker need for one long, large
cine run? It writes a synthetic XA cine built from a real 1024x1024 angiogram (NEMA WG04 XA1,
shifted a little each frame so frames differ), ``--frames`` frames at ``--bits`` bits stored,
uncompressed, then analyses it in a fresh process exactly as the worker does (read the stored
file, decode frame by frame, keyframes, TTA inference with the configured model) and reports
that process's peak resident memory (``ru_maxrss``), model loading included.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

WG04_REFERENCE = "dicom/xa1_wg04_uncompressed_reference.dcm"


def synthetic_cine(data_dir: Path, out: Path, frames: int, size: int, bits: int) -> Path:
    """Write an uncompressed ``frames`` x ``size`` x ``size`` XA cine at ``bits`` bits stored."""
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, XRayAngiographicImageStorage, generate_uid

    src = pydicom.dcmread(Path(data_dir) / WG04_REFERENCE)
    base = src.pixel_array.astype(np.float32)
    base = base / max(1.0, float(base.max()))
    if base.shape != (size, size):
        from PIL import Image

        base = np.asarray(Image.fromarray(base, mode="F").resize((size, size), Image.Resampling.BILINEAR))
    top = 2**bits - 1
    pixels = np.empty((frames, size, size), dtype=np.uint16 if bits > 8 else np.uint8)
    for i in range(frames):
        shifted = np.roll(base, shift=(i % 7 - 3, i % 5 - 2), axis=(0, 1))
        fade = 0.6 + 0.4 * min(1.0, i / max(1, frames // 3))  # contrast arriving
        pixels[i] = np.clip(shifted * fade * top, 0, top).astype(pixels.dtype)

    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = XRayAngiographicImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality = "XA"
    ds.PatientName, ds.PatientID = "Bench^Synthetic", "BENCH"
    ds.Rows = ds.Columns = size
    ds.NumberOfFrames = frames
    ds.FrameIncrementPointer = pydicom.tag.Tag("FrameTime")
    ds.FrameTime = 66.7
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16 if bits > 8 else 8
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    ds.PixelData = pixels.tobytes()
    del pixels
    ds.save_as(out, enforce_file_format=True)
    return out


def analyse_once(path: str, model_path: str, keyframes: int) -> dict:
    """Analyse ``path`` as the worker does (the served model, engine as configured by default:
    the shipped LiteRT form); report time and this process's peak RSS."""
    from arcade_pacs.model.serving import load
    from arcade_pacs.pipeline.analyse import classify_keyframes
    from arcade_pacs.pipeline.frames import FrameSource
    from arcade_pacs.pipeline.keyframes import frame_opacification, select_keyframes
    from arcade_pacs.settings import ModelSettings

    t0 = time.perf_counter()
    clf, _ = load(ModelSettings(path=Path(model_path)))
    t1 = time.perf_counter()
    source = FrameSource(path)  # the worker's path (analyse_source), timed stage by stage
    opac = source.scan(frame_opacification)
    chosen = select_keyframes(opac, keyframes)
    frames = source.read(chosen)
    t2 = time.perf_counter()
    analysis = classify_keyframes(frames, opac, chosen, clf.predict, clf.info.threshold)
    t3 = time.perf_counter()
    return {
        "engine": clf.engine_name,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "model_load_s": round(t1 - t0, 2),
        "decode_and_keyframes_s": round(t2 - t1, 2),
        "classify_s": round(t3 - t2, 2),
        "keyframes": analysis.finding.frame_numbers,
        "probability": round(analysis.finding.probability, 4),
    }


def bench_cine(data_dir: Path, model_path: Path, frames: int, size: int, bits: int, keyframes: int) -> dict:
    """Build the synthetic cine, analyse it in a fresh process, return the figures."""
    with tempfile.TemporaryDirectory() as tmp:
        path = synthetic_cine(data_dir, Path(tmp) / "cine.dcm", frames, size, bits)
        file_mb = path.stat().st_size / 2**20
        out = subprocess.run(
            [sys.executable, "-m", "arcade_pacs.bench.cine", str(path), str(model_path), str(keyframes)],
            capture_output=True, text=True, check=True,
        )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return {"frames": frames, "size": size, "bits_stored": bits, "file_mb": round(file_mb, 1),
            "full_resolution_float32_mb": round(frames * size * size * 4 / 2**20, 1)} | result


if __name__ == "__main__":  # the measured child process
    print(json.dumps(analyse_once(sys.argv[1], sys.argv[2], int(sys.argv[3]))))
