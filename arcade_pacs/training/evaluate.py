"""The fixed evaluation protocol, so that numbers compare across model versions.

On every 512x512 image of a split, the 3x3 grid of 256x256 windows at stride 128 is scored by
the product's own path (:func:`arcade_pacs.pipeline.tensors.frame_tensors` and TTA). Windows
are labelled by :func:`arcade_pacs.training.data.window_labels`. The threshold is the one stored
with the model (chosen on ``val``), never re-chosen on the evaluated split.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from arcade_pacs.core import figures
from arcade_pacs.pipeline.scores import frame_probabilities
from arcade_pacs.pipeline.tensors import GRID, frame_tensors
from arcade_pacs.pipeline.tta import tta_scores
from arcade_pacs.training.data import Split, window_labels
from arcade_pacs.training.metrics import roc_auc, roc_curve

GRID_ARRAY = np.array([[w.x0, w.y0, w.size] for w in GRID])


@dataclass
class SplitScores:
    """Scores of a split on the grid: ``window_scores`` and ``labels`` are ``(N, 9)``."""

    window_scores: np.ndarray
    labels: np.ndarray
    boxes: list[np.ndarray]

    @property
    def frame_probs(self) -> np.ndarray:
        return frame_probabilities(self.window_scores)


def score_split(
    predict: Callable[[np.ndarray], np.ndarray],
    split: Split,
    tta: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> SplitScores:
    """Score every grid window of every image with ``predict`` (TTA mean unless ``tta=False``)."""
    scores = np.zeros((len(split), len(GRID)), dtype=np.float64)
    labels = np.zeros((len(split), len(GRID)), dtype=np.int8)
    for i in range(len(split)):
        tensors = frame_tensors(split.images[i].astype(np.float32) / 255.0)
        if tta:
            scores[i] = tta_scores(predict, tensors).mean
        else:
            scores[i] = np.asarray(predict(tensors)).reshape(-1)
        labels[i] = window_labels(GRID_ARRAY, split.boxes[i])
        if progress:
            progress(i + 1, len(split))
    return SplitScores(scores, labels, split.boxes)


def window_auc(scores: SplitScores) -> float:
    """ROC AUC over positive vs negative grid windows (ignored windows left out)."""
    keep = scores.labels >= 0
    return roc_auc(scores.labels[keep] == 1, scores.window_scores[keep])


def metrics(scores: SplitScores, threshold: float) -> dict:
    """All protocol metrics at ``threshold``."""
    keep = scores.labels >= 0
    pos = scores.labels == 1
    neg = scores.labels == 0
    has_stenosis = np.array([len(b) > 0 for b in scores.boxes])
    frame = scores.frame_probs
    n_boxes, found = 0, 0
    for i, boxes in enumerate(scores.boxes):
        hot = GRID_ARRAY[scores.window_scores[i] >= threshold]
        for x0, y0, x1, y1 in boxes:
            n_boxes += 1
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            inside = (cx >= hot[:, 0]) & (cx < hot[:, 0] + hot[:, 2])
            inside &= (cy >= hot[:, 1]) & (cy < hot[:, 1] + hot[:, 2])
            found += bool(inside.any())
    return {
        "window_auc": roc_auc(scores.labels[keep] == 1, scores.window_scores[keep]),
        "threshold": float(threshold),
        "image_sensitivity": float((frame[has_stenosis] >= threshold).mean())
        if has_stenosis.any()
        else float("nan"),
        "negative_window_fpr": float((scores.window_scores[neg] >= threshold).mean())
        if neg.any()
        else float("nan"),
        "positive_window_tpr": float((scores.window_scores[pos] >= threshold).mean())
        if pos.any()
        else float("nan"),
        "lesion_recall": found / n_boxes if n_boxes else float("nan"),
        "n_images": int(len(scores.boxes)),
        "n_positive_windows": int(pos.sum()),
        "n_negative_windows": int(neg.sum()),
        "n_lesions": int(n_boxes),
    }


def plot_roc(scores: SplitScores, threshold: float, title: str, path: Path) -> Path:
    """Write the window ROC curve with the operating point marked, as a PNG."""
    keep = scores.labels >= 0
    y, s = scores.labels[keep] == 1, scores.window_scores[keep]
    fpr, tpr, _ = roc_curve(y, s)
    op_fpr = float((s[~y] >= threshold).mean())
    op_tpr = float((s[y] >= threshold).mean())
    fig, ax = figures.subplots(figsize=(5, 5), dpi=100)
    ax.plot(fpr, tpr, label=f"windows (AUC {roc_auc(y, s):.3f})")
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=0.8)
    ax.scatter([op_fpr], [op_tpr], c="red", zorder=3, label=f"threshold {threshold:.3f}")
    ax.set_xlabel("false-positive rate (negative windows)")
    ax.set_ylabel("true-positive rate (positive windows)")
    ax.set_title(title)
    ax.legend(loc="lower right")
    return figures.save(fig, path)
