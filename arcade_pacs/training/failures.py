"""Where the model fails: pictures of the worst misses and false alarms of an evaluated split.

``arcade-pacs evaluate --failures DIR`` writes two contact sheets for the model card:

- **false negatives**: annotated stenoses the model missed worst, i.e. the lesions whose best
  covering positive grid window scored lowest (below the threshold), drawn with their box;
- **false positives**: the negative grid windows (touching no stenosis) scored highest.

Each tile shows the 512x512 image with the window (and, for misses, the lesion box) and the
score, so a reader can see what the failures have in common.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from arcade_pacs.core import figures
from arcade_pacs.training.data import Split
from arcade_pacs.training.evaluate import GRID_ARRAY, SplitScores


@dataclass(frozen=True)
class Failure:
    """One tile: image ``index`` of the split, grid ``window``, its ``score``, an optional lesion box."""

    index: int
    window: int
    score: float
    box: tuple[float, float, float, float] | None = None


def worst_misses(scores: SplitScores, threshold: float, k: int = 8) -> list[Failure]:
    """Lesions whose best covering positive window scored lowest, below ``threshold``."""
    misses = []
    for i, boxes in enumerate(scores.boxes):
        for box in boxes:
            x0, y0, x1, y1 = box
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            covering = [
                j for j, (wx, wy, ws) in enumerate(GRID_ARRAY)
                if wx <= cx < wx + ws and wy <= cy < wy + ws and scores.labels[i, j] == 1
            ]
            if not covering:
                continue
            best = max(covering, key=lambda j: scores.window_scores[i, j])
            if scores.window_scores[i, best] < threshold:
                misses.append(Failure(i, best, float(scores.window_scores[i, best]), tuple(float(v) for v in box)))
    return sorted(misses, key=lambda f: f.score)[:k]


def worst_false_alarms(scores: SplitScores, threshold: float, k: int = 8) -> list[Failure]:
    """Negative windows scored highest, at or above ``threshold``."""
    neg = np.argwhere(scores.labels == 0)
    ranked = sorted(((float(scores.window_scores[i, j]), i, j) for i, j in neg), reverse=True)
    return [Failure(int(i), int(j), s) for s, i, j in ranked[:k] if s >= threshold]


def contact_sheet(split: Split, failures: list[Failure], title: str, path: Path, columns: int = 4) -> Path | None:
    """Draw ``failures`` as a grid of tiles (nothing written when there are none)."""
    if not failures:
        return None
    from matplotlib.patches import Rectangle

    rows = (len(failures) + columns - 1) // columns
    fig, axes = figures.subplots(rows, columns, figsize=(3 * columns, 3.2 * rows), dpi=90, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, f in zip(axes.ravel(), failures, strict=False):
        ax.imshow(split.images[f.index], cmap="gray", vmin=0, vmax=255)
        wx, wy, ws = GRID_ARRAY[f.window]
        ax.add_patch(Rectangle((wx, wy), ws, ws, fill=False, ec="orange", lw=1.5))
        if f.box is not None:
            x0, y0, x1, y1 = f.box
            ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec="lime", lw=1.5))
        ax.set_title(f"{split.file_names[f.index]}  p={f.score:.2f}", fontsize=8)
    fig.suptitle(title)
    return figures.save(fig, path)


def write_failures(split: Split, scores: SplitScores, threshold: float, folder: Path, k: int = 8) -> dict:
    """Both contact sheets into ``folder``; returns what was drawn (for the model card)."""
    folder = Path(folder)
    misses = worst_misses(scores, threshold, k)
    alarms = worst_false_alarms(scores, threshold, k)
    fn = contact_sheet(split, misses, f"{split.name}: worst missed stenoses (green: lesion, orange: window)",
                       folder / f"failures_{split.name}_false_negatives.png")
    fp = contact_sheet(split, alarms, f"{split.name}: negative windows scored highest",
                       folder / f"failures_{split.name}_false_positives.png")
    return {
        "false_negatives": {"picture": fn.name if fn else None,
                            "cases": [(split.file_names[f.index], round(f.score, 4)) for f in misses]},
        "false_positives": {"picture": fp.name if fp else None,
                            "cases": [(split.file_names[f.index], round(f.score, 4)) for f in alarms]},
    }
