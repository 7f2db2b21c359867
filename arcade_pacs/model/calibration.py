"""Calibration of the model's scores into probabilities (serving side: apply a stored map).

A network trained with balanced batches and hard negatives scores windows on its own scale;
the SR reports the score under the concept "Probability" (DCM 122157), so the score must mean
one. A calibration map fitted on ``val`` (:mod:`arcade_pacs.training.calibrate`) is stored in
the model's sidecar and applied to every pass, before TTA views and ensemble members are
averaged and before the threshold, so the threshold, the SR and the admin all speak the
calibrated scale.

Platt scaling (Platt 1999): ``p = sigmoid(a * logit(s) + b)`` with ``a > 0``, a strictly
increasing map, so it never changes the order of scores (AUC and decisions at a threshold
mapped the same way are unchanged). What "probability" then means: the chance that a window
scored so holds a stenosis, on windows drawn like ARCADE's validation windows (ARCADE's
prevalence, not a cath lab's).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

_EPS = 1e-7


def logit(p: np.ndarray) -> np.ndarray:
    """log(p / (1 - p)), with p clipped away from 0 and 1."""
    p = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1 - _EPS)
    return np.log(p) - np.log1p(-p)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


@dataclass(frozen=True)
class Platt:
    """``p = sigmoid(a * logit(s) + b)``; identity when ``a = 1, b = 0``."""

    a: float = 1.0
    b: float = 0.0
    method: str = "platt"

    def __post_init__(self):
        if not self.a > 0:
            raise ValueError("a Platt map must be increasing (a > 0)")

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        out = sigmoid(self.a * logit(scores) + self.b)
        return out.astype(np.asarray(scores).dtype if np.asarray(scores).dtype.kind == "f" else np.float64)

    def inverse(self, p: float) -> float:
        """The raw score that maps to ``p`` (to express a raw threshold on the calibrated scale)."""
        return float(sigmoid((logit(p) - self.b) / self.a))

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict | None) -> Platt:
        """The stored map; the identity for a model stored without one."""
        if not data:
            return IDENTITY
        if data.get("method", "platt") != "platt":
            raise ValueError(f"unknown calibration method {data.get('method')!r}")
        return cls(float(data["a"]), float(data["b"]))

    @property
    def is_identity(self) -> bool:
        return self.a == 1.0 and self.b == 0.0


IDENTITY = Platt()
