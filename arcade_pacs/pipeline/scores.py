"""Window scores to frame, instance and finding: the aggregation rules, in one place.

- A window's score is its TTA mean (:mod:`arcade_pacs.pipeline.tta`).
- A frame's probability is the maximum over its grid windows: a stenosis anywhere in the
  frame makes the frame positive, and a window that contains it is where the model looked.
- An instance's (cine run's) probability is the mean of the ``top_k`` highest keyframe
  probabilities (default 3), so a single noisy frame cannot flip the result of a run, while
  a lesion seen clearly in a few contrast-filled frames still counts.
"""

from __future__ import annotations

import numpy as np

INSTANCE_TOP_K = 3


def frame_probabilities(window_scores: np.ndarray) -> np.ndarray:
    """``(F, W)`` window scores to ``(F,)`` frame probabilities (max over windows)."""
    window_scores = np.asarray(window_scores, dtype=np.float64)
    if window_scores.size == 0:
        return np.zeros(len(window_scores))
    return window_scores.max(axis=-1)


def top_frames(frame_probs: np.ndarray, top_k: int = INSTANCE_TOP_K) -> np.ndarray:
    """Indices of the ``top_k`` highest frame probabilities (all of them when fewer)."""
    frame_probs = np.asarray(frame_probs, dtype=np.float64).reshape(-1)
    if len(frame_probs) == 0:
        raise ValueError("no frame probabilities to aggregate")
    return np.argsort(-frame_probs, kind="stable")[: max(1, top_k)]


def instance_probability(frame_probs: np.ndarray, top_k: int = INSTANCE_TOP_K) -> float:
    """Mean of the ``top_k`` highest frame probabilities (all of them when fewer)."""
    frame_probs = np.asarray(frame_probs, dtype=np.float64).reshape(-1)
    return float(frame_probs[top_frames(frame_probs, top_k)].mean())
