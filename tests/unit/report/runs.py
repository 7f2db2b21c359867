"""Analysed runs made from the real samples, for the tests of the SR, result images and presentation states.

The findings are chosen, not inferred (the classifier is tested elsewhere): regions are real grid
windows mapped to source pixels as the pipeline maps them, on keyframes of the run, so every
drawing path (several regions on a frame, a region off the best keyframes, non-square frames)
is exercised on real headers and real pixels.
"""

from __future__ import annotations

import io
from pathlib import Path

import pydicom
from pydicom.uid import generate_uid

from arcade_pacs.bench.peers import run, tool
from arcade_pacs.core.findings import Finding, Region
from arcade_pacs.pipeline.tensors import FRAME_SIZE, GRID
from arcade_pacs.report.headers import sanitize_header
from arcade_pacs.report.identity import ModelIdentity
from arcade_pacs.report.sr import InstanceResult

MODEL = ModelIdentity("ARCADE EfficientNetB0 stenosis classifier", "effb0-test-1", generate_uid())
SAMPLES = [
    "xa_rubo0002_cine96_jpegbaseline.dcm",
    "xa1_wg04_jpeglossless_sv1.dcm",
    "xa1_wg04_rle.dcm",
    "xa1_wg04_uncompressed_reference.dcm",
    "rf_siemens_karstenhilbert_uncompressed.dcm",
]
"""Every sample in ../shared/data/dicom."""
SCORES = [0.10, 0.20, 0.30, 0.40, 0.92, 0.55, 0.20, 0.10, 0.05]
"""Window scores (TTA mean, row by row over the 3x3 grid) of each keyframe: window 4 is the hot one."""


def source_box(ds, window_index: int) -> tuple[float, float, float, float]:
    """Grid window ``window_index`` of the 512x512 frame in source pixels (``Frames.to_source``)."""
    w = GRID[window_index]
    sx, sy = int(ds.Columns) / FRAME_SIZE, int(ds.Rows) / FRAME_SIZE
    return (w.x0 * sx, w.y0 * sy, w.x1 * sx, w.y1 * sy)


def positive_finding(ds) -> Finding:
    """A positive run: for a cine, keyframes 40, 55, 56, 80 with two regions on 55 and one on 80
    (not among the three best keyframes); for a single frame, two regions on frame 1."""
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        regions = [Region(55, source_box(ds, 4), 0.92), Region(55, source_box(ds, 5), 0.55),
                   Region(80, source_box(ds, 0), 0.51)]
        return Finding(probability=0.83, threshold=0.4, frame_numbers=[40, 55, 56, 80],
                       frame_probabilities=[0.7, 0.92, 0.88, 0.51], tta_original=0.8, tta_flipped=0.86,
                       regions=regions)
    regions = [Region(1, source_box(ds, 4), 0.92), Region(1, source_box(ds, 8), 0.45)]
    return Finding(probability=0.92, threshold=0.4, frame_numbers=[1], frame_probabilities=[0.92],
                   tta_original=0.9, tta_flipped=0.94, regions=regions)


def negative_finding(ds) -> Finding:
    number = 10 if int(ds.get("NumberOfFrames", 1) or 1) > 1 else 1
    return Finding(probability=0.12, threshold=0.4, frame_numbers=[number], frame_probabilities=[0.12],
                   tta_original=0.1, tta_flipped=0.14)


def analysed(path: Path, finding_of=positive_finding) -> InstanceResult:
    """The run at ``path`` with a chosen finding, as the reporter hands it over."""
    header = sanitize_header(pydicom.dcmread(path, stop_before_pixels=True))
    finding = finding_of(header)
    return InstanceResult(source=header, finding=finding, model=MODEL, path=str(path),
                          window_scores={n: list(SCORES) for n in finding.frame_numbers}, instance_id=1)


def saved(dataset, path: Path) -> Path:
    dataset.save_as(path, enforce_file_format=True)
    return path


def reread(dataset) -> pydicom.Dataset:
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    buffer.seek(0)
    return pydicom.dcmread(buffer)


def dciodvfy(path: Path, iod: str) -> tuple[list[str], list[str]]:
    """``(errors, warnings)`` dciodvfy reports for the file at ``path`` (checked against ``iod``)."""
    out = run([tool("dciodvfy"), str(path)])
    text = out.stdout + out.stderr
    assert iod in text, text
    lines = text.splitlines()
    return [x for x in lines if x.startswith("Error")], [x for x in lines if x.startswith("Warning")]


KNOWN_WARNINGS = (
    "(0x0018,0x1002) UI Device UID",  # in Contributing Equipment: see scp/CONFORMANCE.md 3.1
    "this is a Standard Extended SOP Class",  # because of the above
    "needed to build DICOMDIR - Study ID",  # copied (empty) from the source
    "Retired Person Name form",  # the source's Patient's Name, copied unchanged
)
"""The warnings dciodvfy gives for these objects, each explained in scp/CONFORMANCE.md."""


def unexplained(warnings: list[str]) -> list[str]:
    return [w for w in warnings if not any(k in w for k in KNOWN_WARNINGS)]
