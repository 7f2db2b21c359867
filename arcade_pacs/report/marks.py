"""What a run's result shows, decided once: the one source of truth for the SR, the result image,
the presentation state and the dashboard.

- :func:`selected_regions`: the marked windows worth drawing (run positive, strongest first,
  at most :data:`MAX_REGIONS_PER_INSTANCE`);
- :func:`best_keyframes`: the keyframes whose probabilities the run's probability averages
  (:data:`~arcade_pacs.pipeline.scores.INSTANCE_TOP_K`), best first;
- :func:`shown_frames`: the frames a result image shows: those best keyframes and every frame
  holding a selected region, best first;
- :func:`clipped_box` and :func:`outline`: a region's rectangle in source pixel coordinates
  (PS3.3 C.18.6.1.2: from 0 at the top left edge of the top left pixel to Columns/Rows at the
  bottom right edge), closed as a polyline.

The SR's image regions, the GSPS's rectangles and the outlines burnt into the result image are
all made from these, so they cannot disagree.
"""

from __future__ import annotations

import numpy as np

from arcade_pacs.core.findings import Finding, Region
from arcade_pacs.pipeline.scores import INSTANCE_TOP_K, top_frames

MAX_REGIONS_PER_INSTANCE = 6


def selected_regions(finding: Finding) -> list[Region]:
    """The marked windows worth drawing: instance positive, strongest first, capped."""
    if not finding.present:
        return []
    regions = sorted(finding.regions, key=lambda r: -r.probability)
    return regions[:MAX_REGIONS_PER_INSTANCE]


def frame_scores(finding: Finding) -> np.ndarray:
    """Keyframe probabilities in keyframe order (``-inf`` where none is stored)."""
    return np.array([-np.inf if p is None else p for p in finding.frame_probabilities], dtype=np.float64)


def best_keyframes(finding: Finding) -> list[int]:
    """1-based frame numbers of the keyframes the run's probability is the mean of, best first."""
    return [finding.frame_numbers[i] for i in top_frames(frame_scores(finding), INSTANCE_TOP_K)]


def shown_frames(finding: Finding) -> list[int]:
    """Frames a result image shows: the best keyframes and those with a selected region, best first."""
    by_frame = dict(zip(finding.frame_numbers, frame_scores(finding), strict=True))
    wanted = set(best_keyframes(finding)) | {r.frame_number for r in selected_regions(finding)}
    return sorted(wanted, key=lambda n: (-by_frame.get(n, -np.inf), n))


def clipped_box(rows: int, columns: int, box) -> tuple[float, float, float, float]:
    """``box`` ``(x0, y0, x1, y1)`` clipped to an image of ``rows`` x ``columns`` pixels."""
    x0, y0, x1, y1 = (float(v) for v in box)
    return (float(np.clip(x0, 0, columns)), float(np.clip(y0, 0, rows)),
            float(np.clip(x1, 0, columns)), float(np.clip(y1, 0, rows)))


def outline(box) -> np.ndarray:
    """A closed rectangle as a polyline (first point repeated last), ``(5, 2)`` column/row pairs."""
    x0, y0, x1, y1 = box
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]], dtype=np.float64)


def whole_frame(rows: int, columns: int) -> tuple[float, float, float, float]:
    """The box of a whole frame: the area the classifier looks at."""
    return (0.0, 0.0, float(columns), float(rows))


def region_comment(region: Region) -> str:
    """The region's result in words: what a viewer shows as the measurement's label."""
    return f"stenosis probability {region.probability:.2f} (research use)"
