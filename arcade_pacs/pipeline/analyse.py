"""The analysis of one instance, composed from the pure stages.

frames -> opacification -> keyframes -> tensors (grid windows) -> TTA scores -> Finding.
A stored instance is read in two passes (:func:`analyse_source`): every frame is scored, then
only the keyframes are decoded, so memory does not grow with the length of the run.
``predict`` is injected (the loaded classifier's batch prediction), so this stays a pure
function of its inputs and is tested with a tiny model as easily as with the shipped one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from arcade_pacs.core.findings import Finding, Region
from arcade_pacs.pipeline.frames import Frames, FrameSource
from arcade_pacs.pipeline.keyframes import frame_opacification, opacification, select_keyframes
from arcade_pacs.pipeline.scores import INSTANCE_TOP_K, frame_probabilities, instance_probability, top_frames
from arcade_pacs.pipeline.tensors import GRID, frame_tensors, stack_tensors
from arcade_pacs.pipeline.tta import tta_scores


@dataclass(frozen=True)
class Analysis:
    """A finding plus the per-frame evidence behind it (for the database and the admin)."""

    finding: Finding
    opacification: np.ndarray  # (T,) every frame
    keyframes: list[int]  # 0-based indices into the frames
    window_scores: np.ndarray  # (K, W) TTA mean per keyframe and grid window
    window_original: np.ndarray  # (K, W) the view as given, per keyframe and grid window
    window_flipped: np.ndarray  # (K, W) the mirrored view

    @property
    def disagreement(self) -> np.ndarray:
        """``(K, W)`` absolute difference between the two TTA views."""
        return np.abs(self.window_original - self.window_flipped)


def analyse_frames(
    frames: Frames,
    predict: Callable[[np.ndarray], np.ndarray],
    threshold: float,
    keyframes: int = 8,
    top_k: int = INSTANCE_TOP_K,
) -> Analysis:
    """Analyse frames already in memory (an uploaded picture, a short run)."""
    opac = opacification(frames.data, frames.valid)
    chosen = select_keyframes(opac, keyframes)
    subset = Frames(frames.data[chosen], frames.valid, frames.rows, frames.columns,
                    numbers=[frames.frame_numbers[i] for i in chosen])
    return classify_keyframes(subset, opac, chosen, predict, threshold, top_k)


def analyse_source(
    source: FrameSource,
    predict: Callable[[np.ndarray], np.ndarray],
    threshold: float,
    keyframes: int = 8,
    top_k: int = INSTANCE_TOP_K,
) -> Analysis:
    """Analyse a stored instance in two passes: score every frame, decode only the keyframes."""
    opac = source.scan(frame_opacification)
    chosen = select_keyframes(opac, keyframes)
    return classify_keyframes(source.read(chosen), opac, chosen, predict, threshold, top_k)


def classify_keyframes(
    keyframes: Frames,
    opac: np.ndarray,
    chosen: list[int],
    predict: Callable[[np.ndarray], np.ndarray],
    threshold: float,
    top_k: int = INSTANCE_TOP_K,
) -> Analysis:
    """Grid windows of each keyframe, TTA scores, aggregation, regions: the :class:`Finding`."""
    numbers = keyframes.frame_numbers
    tensors = stack_tensors([frame_tensors(frame) for frame in keyframes.data])
    tta = tta_scores(predict, tensors)
    shape = (len(numbers), len(GRID))
    mean = tta.mean.reshape(shape)
    frame_probs = frame_probabilities(mean)
    # The two TTA views of exactly the windows behind the probability (each top frame's best
    # window), so that probability == (tta_original + tta_flipped) / 2 holds exactly.
    best = mean.argmax(axis=1)
    top = top_frames(frame_probs, top_k)
    view = lambda scores: float(scores.reshape(shape)[top, best[top]].mean())  # noqa: E731
    regions = [
        Region(
            frame_number=numbers[f],
            box=keyframes.to_source((w.x0, w.y0, w.x1, w.y1)),
            probability=float(mean[f, j]),
        )
        for f in range(len(numbers))
        for j, w in enumerate(GRID)
        if mean[f, j] >= threshold
    ]
    finding = Finding(
        probability=instance_probability(frame_probs, top_k),
        threshold=float(threshold),
        frame_numbers=list(numbers),
        frame_probabilities=[float(p) for p in frame_probs],
        tta_original=view(tta.original),
        tta_flipped=view(tta.flipped),
        regions=regions,
    )
    return Analysis(
        finding=finding,
        opacification=opac,
        keyframes=list(chosen),
        window_scores=mean,
        window_original=tta.original.reshape(shape),
        window_flipped=tta.flipped.reshape(shape),
    )
