"""Small readers of DICOM image attributes, shared by receipt (checks) and the pipeline (decoding).

Receipt refuses what the pipeline could never decode, so both must read the same attributes
the same way; one function each keeps them from drifting apart.
"""

from __future__ import annotations

from pydicom import Dataset

GRAYSCALE = ("MONOCHROME1", "MONOCHROME2")
"""Photometric Interpretations the classifier can use (PS3.3 C.7.6.3.1.2): one grey sample."""


class InvalidAttribute(ValueError):
    """An attribute holds a value that cannot be used; the message names the attribute."""


def number_of_frames(ds: Dataset) -> int:
    """Number of Frames (0028,0008), 1 when absent (a single-frame image, PS3.3 C.7.6.6)."""
    value = ds.get("NumberOfFrames")
    if value is None or value == "":
        return 1
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise InvalidAttribute("invalid Number of Frames") from exc


def grayscale_problem(ds: Dataset) -> str | None:
    """Why the image is not one-sample grayscale, or ``None`` when it is."""
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    if photometric not in GRAYSCALE:
        return f"unsupported Photometric Interpretation {photometric[:16]!r} (grayscale only)"
    if int(ds.get("SamplesPerPixel", 1) or 1) != 1:
        return "more than one sample per pixel (grayscale only)"
    return None
