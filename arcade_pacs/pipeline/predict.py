"""One-file prediction, as the original ARCADE ``/predict`` answered it (HTTP and CLI share it)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from arcade_pacs.pipeline.analyse import analyse_frames
from arcade_pacs.pipeline.frames import frames_from_bytes
from arcade_pacs.pipeline.part10 import Limits

DIAGNOSIS_POSITIVE = "stenosis"
DIAGNOSIS_NEGATIVE = "no stenosis"


def predict_bytes(
    data: bytes,
    predict: Callable[[np.ndarray], np.ndarray],
    threshold: float,
    keyframes: int,
    max_frames: int | None = None,
    limits: Limits | None = None,
) -> dict:
    """Analyse one uploaded file (DICOM, PNG or JPEG) and answer with the original service's keys.

    ``diagnosis``, ``confidence`` (probability of the stated diagnosis), ``raw_score`` (probability
    of stenosis), ``is_abnormal``, ``tta_details: {original, flipped}``; plus ``threshold``,
    ``keyframes`` (1-based) and ``regions`` for explanation. ``limits`` bound a DICOM file
    (:mod:`arcade_pacs.pipeline.part10`; the defaults with ``max_frames`` when not given).
    """
    frames = frames_from_bytes(data, max_frames=max_frames, limits=limits)
    f = analyse_frames(frames, predict, threshold, keyframes=keyframes).finding
    abnormal = f.present
    return {
        "diagnosis": DIAGNOSIS_POSITIVE if abnormal else DIAGNOSIS_NEGATIVE,
        "confidence": round(f.probability if abnormal else 1.0 - f.probability, 6),
        "raw_score": round(f.probability, 6),
        "is_abnormal": abnormal,
        "tta_details": {"original": round(f.tta_original, 6), "flipped": round(f.tta_flipped, 6)},
        "threshold": round(f.threshold, 6),
        "keyframes": f.frame_numbers,
        "regions": [r.to_json() for r in f.regions],
    }
