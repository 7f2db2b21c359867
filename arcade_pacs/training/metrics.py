"""Evaluation metrics with no dependency beyond numpy, so they are easy to check by hand."""

from __future__ import annotations

import numpy as np


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties).

    Returns ``nan`` when either class is absent.
    """
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores), dtype=np.float64)
    i = 0
    while i < len(scores):
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    u = ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(fpr, tpr, thresholds)`` with thresholds in decreasing order (score >= t is positive)."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    thresholds = np.concatenate([[np.inf], np.unique(scores)[::-1]])
    n_pos, n_neg = max(int(labels.sum()), 1), max(int((~labels).sum()), 1)
    tpr = np.array([(scores[labels] >= t).sum() / n_pos for t in thresholds])
    fpr = np.array([(scores[~labels] >= t).sum() / n_neg for t in thresholds])
    return fpr, tpr, thresholds


def threshold_for_fpr(negative_scores: np.ndarray, target_fpr: float) -> float:
    """Smallest threshold whose false-positive rate on ``negative_scores`` is at most ``target_fpr``.

    Used on the validation split only; the chosen value is stored with the model and never
    re-chosen on the split being evaluated.
    """
    neg = np.sort(np.asarray(negative_scores, dtype=np.float64))[::-1]
    if len(neg) == 0:
        return 0.5
    allowed = int(np.floor(target_fpr * len(neg)))  # negatives allowed at or above the threshold
    if allowed >= len(neg):
        return float(neg[-1])
    # Threshold just above the (allowed+1)-th highest negative score.
    return float(np.nextafter(neg[allowed], np.inf))
