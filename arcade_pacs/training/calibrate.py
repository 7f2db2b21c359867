"""Fitting and judging the calibration map (training side; serving applies it, see
:mod:`arcade_pacs.model.calibration`).

The map is fitted on ``val`` windows only (positive and negative grid windows, ignored ones
left out) by maximum likelihood, and judged on ``test`` by the expected calibration error
(ECE, 10 equal-width bins, Naeini et al. 2015) and a reliability diagram, before and after.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

from arcade_pacs.core import figures
from arcade_pacs.model.calibration import Platt, logit
from arcade_pacs.training.data import Split
from arcade_pacs.training.views import VIEWS, ViewBank, as_split_scores, score_views


def fit_platt(scores: np.ndarray, labels: np.ndarray) -> Platt:
    """Maximum-likelihood Platt map of ``scores`` (probabilities) to binary ``labels``."""
    x = logit(np.asarray(scores).reshape(-1))
    y = np.asarray(labels).reshape(-1).astype(np.float64)
    if len(np.unique(y)) < 2:
        raise ValueError("calibration needs both positive and negative windows")

    def nll(params):
        a, b = params
        z = a * x + b
        # log(1 + exp(z)) - y z, computed stably; gradient in closed form.
        loss = np.logaddexp(0.0, z) - y * z
        p = 1.0 / (1.0 + np.exp(-z))
        g = p - y
        return loss.mean(), np.array([(g * x).mean(), g.mean()])

    result = minimize(nll, x0=np.array([1.0, 0.0]), jac=True, method="L-BFGS-B",
                      bounds=[(1e-3, None), (None, None)])
    a, b = result.x
    return Platt(float(a), float(b))


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = 10) -> dict:
    """Per-bin mean predicted probability, observed frequency and count, and the ECE."""
    p = np.asarray(probs, dtype=np.float64).reshape(-1)
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    mean_p, freq, count = [], [], []
    ece = 0.0
    for k in range(bins):
        m = which == k
        n = int(m.sum())
        count.append(n)
        mean_p.append(float(p[m].mean()) if n else None)
        freq.append(float(y[m].mean()) if n else None)
        if n:
            ece += n / len(p) * abs(p[m].mean() - y[m].mean())
    return {"ece": float(ece), "bins": bins, "mean_predicted": mean_p, "observed": freq, "count": count}


def plot_reliability(curves: dict[str, dict], title: str, path: Path) -> Path:
    """Reliability diagram of one or more ``reliability`` results (e.g. before/after)."""
    fig, ax = figures.subplots(figsize=(5, 5), dpi=100)
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=0.8, label="perfect calibration")
    for name, r in curves.items():
        pts = [(p, f) for p, f in zip(r["mean_predicted"], r["observed"], strict=True) if p is not None]
        ax.plot([p for p, _ in pts], [f for _, f in pts], marker="o", label=f"{name} (ECE {r['ece']:.3f})")
    ax.set_xlabel("predicted probability (window)")
    ax.set_ylabel("observed frequency of stenosis")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(loc="upper left")
    return figures.save(fig, path)


TTA_VIEWS = ("original", "hflip")
"""The views serving averages (:func:`arcade_pacs.pipeline.tta.tta_scores`): original + mirror."""


@dataclass
class Calibrated:
    """A calibration fitted on ``val`` and what it gives there."""

    platt: Platt
    threshold: float  # on the calibrated scale, for the target FPR on val's negative windows
    metrics: dict  # the protocol's metrics on val, calibrated scores
    ece_raw: float
    ece_calibrated: float


def tta_views(predict: Callable[[np.ndarray], np.ndarray], split: Split) -> ViewBank:
    """Raw per-view scores of ``split`` (the views serving averages), for fitting or judging."""
    return score_views(predict, split, [VIEWS[v] for v in TTA_VIEWS], member="model")


def _views(bank: ViewBank) -> np.ndarray:
    return np.stack([bank.scores[v] for v in TTA_VIEWS])  # (V, N, 9)


def calibrated_scores(bank: ViewBank, platt: Platt) -> np.ndarray:
    """What serving computes per window: each view calibrated, then averaged."""
    return platt(_views(bank)).mean(axis=0)


def fit_on_views(bank: ViewBank, target_fpr: float) -> Calibrated:
    """Fit the Platt map on every labelled window's views, choose the threshold on the result."""
    from arcade_pacs.training.evaluate import metrics
    from arcade_pacs.training.metrics import threshold_for_fpr

    keep = bank.labels >= 0
    views = _views(bank)
    platt = fit_platt(views[:, keep].ravel(), np.tile(bank.labels[keep], len(views)))
    scores = calibrated_scores(bank, platt)
    threshold = threshold_for_fpr(scores[bank.labels == 0], target_fpr)
    labels = bank.labels[keep]
    return Calibrated(
        platt=platt,
        threshold=threshold,
        metrics=metrics(as_split_scores(bank, scores), threshold),
        ece_raw=reliability(views.mean(axis=0)[keep], labels)["ece"],
        ece_calibrated=reliability(scores[keep], labels)["ece"],
    )


def raw_classifier(classifier):
    """The same members and engines without the calibration (what the map was fitted on)."""
    from dataclasses import replace

    from arcade_pacs.model.classifier import Classifier

    raw = replace(classifier.info, calibration={})
    return Classifier(classifier._keras, raw, classifier.path, classifier.batch_size, classifier.engines[0],
                      classifier.engines[1:])


def score_calibrated(classifier, split: Split, progress: Callable[[str, int, int], None] | None = None):
    """The protocol's scores as serving computes them, and the calibration judged on them.

    Returns ``(scores, calibration)``: :class:`SplitScores` of each window's calibrated views
    averaged (equal to scoring with ``classifier`` itself), and the expected calibration error
    and reliability curve before (raw views averaged) and after the map.
    """
    bank = score_views(raw_classifier(classifier).predict, split, [VIEWS[v] for v in TTA_VIEWS], "model",
                       progress=progress)
    platt = classifier.calibration
    scores = calibrated_scores(bank, platt)
    keep = bank.labels >= 0
    before = reliability(_views(bank).mean(axis=0)[keep], bank.labels[keep])
    after = reliability(scores[keep], bank.labels[keep])
    return as_split_scores(bank, scores), {"raw": before, "calibrated": after}
