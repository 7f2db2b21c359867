"""Test-time augmentation: score each tensor as given and mirrored left-right, then average.

A stenosis is no less a stenosis in a mirrored view (left and right coronary views mirror one
another), so disagreement between the two scores is a measure of the model's uncertainty that
the admin and the SR report alongside the averaged probability.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TTAScores:
    """Per-tensor scores: ``original``, ``flipped`` and their mean, each shape ``(N,)``."""

    original: np.ndarray
    flipped: np.ndarray

    @property
    def mean(self) -> np.ndarray:
        return (self.original + self.flipped) / 2.0

    @property
    def disagreement(self) -> np.ndarray:
        """Absolute difference between the two views, in probability units."""
        return np.abs(self.original - self.flipped)


def tta_scores(predict: Callable[[np.ndarray], np.ndarray], tensors: np.ndarray) -> TTAScores:
    """Score ``tensors`` (N, H, W, C) and their horizontal mirror.

    The mirror is a view, never a copy: ``predict`` is called once per view (the engine batches
    either way), so the tensors of a job are held once in memory, not twice.
    """
    tensors = np.asarray(tensors, dtype=np.float32)
    if len(tensors) == 0:
        empty = np.zeros(0, dtype=np.float32)
        return TTAScores(empty, empty)
    original = np.asarray(predict(tensors), dtype=np.float32).reshape(-1)
    flipped = np.asarray(predict(tensors[:, :, ::-1, :]), dtype=np.float32).reshape(-1)
    return TTAScores(original=original, flipped=flipped)
