"""Pictures of a result, drawn by the server from the stored result and the stored pixels.

Why the model said what it said:

- :func:`keyframe_png`: a keyframe as the model saw it (display polarity, VOI, shutters,
  512x512) with a thermal heat map of its 3x3 window scores (TTA mean) and, outlined, the
  regions that went into the SR (:func:`arcade_pacs.report.marks.selected_regions`), drawn by
  the same code as the result images sent to the PACS (:mod:`arcade_pacs.report.drawing`);
- :func:`histogram_png`: the keyframe's pixel-intensity histogram (how the contrast dye is
  distributed: opacified vessels add a dark tail);
- :func:`tta_png`: TTA agreement, the original and the mirrored view of each keyframe;
- :func:`opacification_png`: the opacification curve of every frame with the keyframes marked;
- :func:`probability_png`: the run's probability and each keyframe's against the threshold.

Every picture is drawn from a real result; there is no placeholder. Figures are made without
pyplot (:func:`arcade_pacs.core.figures.figure`) so request threads can draw at once.
"""

from __future__ import annotations

import base64
import io
import os
from functools import lru_cache

import numpy as np
from PIL import Image

from arcade_pacs.core import figures
from arcade_pacs.core.findings import Region
from arcade_pacs.pipeline.frames import FrameSource
from arcade_pacs.report.drawing import DisplayFrame, draw_keyframe

__all__ = ["DisplayFrame", "load_frame", "keyframe_png", "histogram_stats", "histogram_png", "tta_png",
           "opacification_png", "probability_png", "data_uri"]


@lru_cache(maxsize=32)
def _load(path: str, mtime_ns: int, frame_number: int) -> DisplayFrame:
    source = FrameSource(path)
    source.scan()
    frames = source.read([frame_number - 1])
    return DisplayFrame(frames.data[0], frames.valid, frames.rows, frames.columns, frame_number)


def load_frame(path: str, frame_number: int) -> DisplayFrame:
    """1-based ``frame_number`` of a stored instance through the analysis pipeline (cached).

    The file's modification time is part of the cache key, so a re-sent instance is read again.
    """
    return _load(str(path), os.stat(path).st_mtime_ns, int(frame_number))


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def keyframe_png(frame: DisplayFrame, window_scores: list[float], threshold: float, regions: list[Region]) -> bytes:
    """The keyframe with the window-score heat map and ``regions`` of this frame outlined.

    Drawn by :func:`arcade_pacs.report.drawing.draw_keyframe`, the code that draws the result
    images sent to the PACS; callers pass :func:`arcade_pacs.report.marks.selected_regions`.
    """
    return _png(draw_keyframe(frame, window_scores, threshold, regions))


def histogram_stats(frame: DisplayFrame) -> dict[str, float]:
    """Intensity statistics of the exposed field of ``frame`` (0 = black, 1 = white)."""
    values = frame.data[frame.valid] if frame.valid.any() else frame.data.ravel()
    p5, p50, p95 = np.percentile(values, [5, 50, 95])
    return {
        "pixels": int(values.size),
        "mean": float(values.mean()),
        "std": float(values.std()),
        "p5": float(p5),
        "median": float(p50),
        "p95": float(p95),
    }


HISTOGRAM_BINS = 64


def histogram_png(frame: DisplayFrame) -> bytes:
    """The keyframe's pixel-intensity histogram over the exposed field, mean and median marked."""
    values = frame.data[frame.valid] if frame.valid.any() else frame.data.ravel()
    stats = histogram_stats(frame)
    fig = figures.figure((4.2, 2.6))
    ax = fig.subplots()
    ax.hist(values, bins=HISTOGRAM_BINS, range=(0, 1), color="tab:gray", edgecolor="black", linewidth=0.3)
    ax.axvline(stats["mean"], color="tab:red", lw=1.2, label=f"mean {stats['mean']:.3f}")
    ax.axvline(stats["median"], color="tab:blue", lw=1.2, ls="--", label=f"median {stats['median']:.3f}")
    ax.set_xlabel("intensity (0 dark = dye, 1 bright)")
    ax.set_ylabel("pixels")
    ax.set_title(f"frame {frame.frame_number}: pixel intensities", fontsize=9)
    ax.legend(fontsize=7)
    return figures.png_bytes(fig)


def tta_png(frame_numbers: list[int], original: list[float], flipped: list[float], threshold: float) -> bytes:
    """TTA agreement: each keyframe's original and mirrored view side by side, the threshold drawn."""
    fig = figures.figure((max(4.0, 0.6 * len(frame_numbers) + 1.5), 2.8))
    ax = fig.subplots()
    x = np.arange(len(frame_numbers))
    ax.bar(x - 0.2, original, width=0.4, label="original", color="tab:blue")
    ax.bar(x + 0.2, flipped, width=0.4, label="flipped", color="tab:orange")
    ax.axhline(threshold, color="tab:red", lw=1, ls="--", label=f"threshold {threshold:.2f}")
    ax.set_xticks(x, [str(n) for n in frame_numbers], fontsize=8)
    ax.set_ylim(0, 1.22)
    ax.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    ax.set_xlabel("keyframe")
    ax.set_ylabel("probability")
    ax.set_title("TTA agreement: original vs mirrored view", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", ncol=3)
    return figures.png_bytes(fig)


def opacification_png(opacification: list[float], keyframes: list[int]) -> bytes:
    """Opacification of every frame (dark-ridge top-hat) with the keyframes marked."""
    numbers = np.arange(1, len(opacification) + 1)
    values = np.asarray(opacification, dtype=np.float32)
    fig = figures.figure((6.5, 2.6))
    ax = fig.subplots()
    ax.plot(numbers, values, c="tab:blue", lw=1.2, label="opacification")
    chosen = np.asarray(keyframes, dtype=int)
    ax.scatter(chosen, values[chosen - 1], c="tab:red", zorder=3, label=f"keyframes ({len(chosen)})")
    ax.set_xlabel("frame number")
    ax.set_ylabel("opacification")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    return figures.png_bytes(fig)


def probability_png(probability: float, threshold: float, frame_numbers: list[int],
                    frame_probabilities: list[float]) -> bytes:
    """The run's probability on a 0-1 scale against the threshold, each keyframe's as a tick."""
    fig = figures.figure((6.5, 1.5))
    ax = fig.subplots()
    ax.axvspan(threshold, 1, color="tab:red", alpha=0.12)
    ax.axvline(threshold, color="tab:red", lw=1.5)
    ax.text(threshold, 1.05, f" threshold {threshold:.3f}", color="tab:red", fontsize=7, va="bottom")
    ax.scatter(frame_probabilities, np.full(len(frame_probabilities), 0.5), marker="|", s=250, c="tab:gray",
               label="keyframes")
    ax.scatter([probability], [0.5], marker="D", s=70, c="black", zorder=3, label=f"run {probability:.3f}")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.4)
    ax.set_yticks([])
    ax.set_xlabel("probability of stenosis")
    ax.legend(fontsize=7, loc="upper left", ncol=2)
    return figures.png_bytes(fig)


def data_uri(png: bytes) -> str:
    """A PNG inlined in a page (the upload page has no stored result to link to)."""
    return "data:image/png;base64," + base64.b64encode(png).decode()
