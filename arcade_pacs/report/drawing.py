"""Drawing a keyframe with what the model saw in it: the one drawing code of the dashboard's
keyframe pictures and of the result images sent to the PACS.

A keyframe is drawn as the model saw it (:mod:`arcade_pacs.pipeline.frames`: display polarity,
VOI, shutters, 512x512), with a thermal heat map of its 3x3 window scores (TTA mean) and the
regions of :func:`arcade_pacs.report.marks.selected_regions` outlined in pure red exactly on
their boxes (scaled from source pixels to the 512x512 frame), so that what a PACS user sees, what
the dashboard shows and what the SR says are the same regions on the same frames.

:func:`load_keyframes` reads the frames through the analysis pipeline and also returns the
VOI it applied (:class:`DisplayVOI`), which the presentation state on the cine carries.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from arcade_pacs.core.findings import Region
from arcade_pacs.pipeline.frames import FrameSource
from arcade_pacs.pipeline.tensors import FRAME_SIZE, GRID

HEAT_ALPHA = 0.45
OUTLINE = (255, 0, 0)
"""Region outlines: pure red, a colour the blended heat map never produces (its alpha is below 1)."""
OUTLINE_WIDTH = 3
LABEL = (255, 255, 0)
TILE_NOTICE = "research use only - not for diagnosis"


@dataclass(frozen=True)
class DisplayFrame:
    """One frame as the model saw it: ``data`` (512, 512) in [0, 1], ``valid`` the exposed field."""

    data: np.ndarray
    valid: np.ndarray
    rows: int
    columns: int
    frame_number: int


@dataclass(frozen=True)
class DisplayVOI:
    """The grey-level mapping the plugin applied to a run, as a presentation state states it.

    ``window``: ``(center, width)`` of the PS3.3 C.11.2.1.2.1 linear function on the Modality LUT's
    output, or ``None`` when the run's own VOI LUT Sequence was applied (a presentation state
    then copies it). ``inverse``: the Presentation LUT Shape is INVERSE (MONOCHROME1 sources,
    shown bright-is-bright as the model saw them). ``explanation``: where the window came from.
    """

    window: tuple[float, float] | None
    inverse: bool
    explanation: str
    rescale: tuple[float, float] | None = (1.0, 0.0)
    """Rescale slope and intercept applied before the VOI; ``None`` when the run's Modality LUT Sequence was."""


@dataclass(frozen=True)
class LoadedRun:
    """Keyframes of one run as the model saw them (1-based frame number -> frame) and the VOI used."""

    frames: dict[int, DisplayFrame]
    voi: DisplayVOI


def range_window(lo: float, hi: float) -> tuple[float, float]:
    """The linear window (PS3.3 C.11.2.1.2.1) that maps ``lo`` to 0 and ``hi`` to 1, as
    :meth:`FrameSource.read` scales a run without a VOI of its own: width ``hi - lo + 1``,
    center ``(lo + hi) / 2 + 0.5``."""
    width = max(hi - lo, 0.0) + 1.0
    return (lo + hi) / 2.0 + 0.5, width


def display_voi(source: FrameSource, frame_index: int = 0) -> DisplayVOI:
    """The VOI :class:`FrameSource` applied (after :meth:`~FrameSource.scan`), for ``frame_index`` (0-based)."""
    inverse = source.photometric == "MONOCHROME1"
    rescale = None if source.modality_lut is not None else source.rescale[frame_index]
    if source.voi_lut is not None:
        return DisplayVOI(None, inverse, "the run's VOI LUT", rescale)
    if source.windows is not None:
        return DisplayVOI(source.windows[frame_index], inverse, "the run's window", rescale)
    lo, hi = float(source.lo), float(source.hi)
    if inverse:  # MONOCHROME1 was negated before its range was taken: the range of the values is [-hi, -lo]
        lo, hi = -hi, -lo
    return DisplayVOI(range_window(lo, hi), inverse, "the run's range of pixel values", rescale)


def load_keyframes(path: str | Path, frame_numbers: list[int]) -> LoadedRun:
    """The 1-based ``frame_numbers`` of a stored instance through the analysis pipeline, and its VOI."""
    source = FrameSource(str(path))
    source.scan()
    numbers = sorted(set(frame_numbers))
    frames = source.read([n - 1 for n in numbers])
    loaded = {
        n: DisplayFrame(frames.data[k], frames.valid, frames.rows, frames.columns, n)
        for k, n in enumerate(frames.frame_numbers)
    }
    return LoadedRun(loaded, display_voi(source, numbers[0] - 1 if numbers else 0))


def to_display(box: tuple[float, float, float, float], rows: int, columns: int) -> tuple[float, float, float, float]:
    """Source pixel coordinates ``(x0, y0, x1, y1)`` to the 512x512 frame (inverse of ``Frames.to_source``)."""
    sx, sy = FRAME_SIZE / columns, FRAME_SIZE / rows
    x0, y0, x1, y1 = box
    return (x0 * sx, y0 * sy, x1 * sx, y1 * sy)


def outline_pixels(box512: tuple[float, float, float, float]) -> tuple[int, int, int, int]:
    """Pixel bounds ``(left, top, right, bottom)`` (inclusive) of a region's outline in the 512x512 frame.

    The outline's outer edge lies on the box's edges (a box ending at 256 ends with pixel 255)
    and it is :data:`OUTLINE_WIDTH` pixels wide, inwards.
    """
    x0, y0, x1, y1 = box512
    right, bottom = min(FRAME_SIZE, round(x1)) - 1, min(FRAME_SIZE, round(y1)) - 1
    return max(0, round(x0)), max(0, round(y0)), right, bottom


def heat_map(window_scores: list[float], size: int = FRAME_SIZE) -> np.ndarray:
    """``(size, size)`` map: each pixel the mean score of the grid windows that cover it, smoothed."""
    cell = 8
    n = size // cell
    total = np.zeros((n, n), np.float32)
    count = np.zeros((n, n), np.float32)
    for window, score in zip(GRID, window_scores, strict=True):
        x0, y0 = int(window.x0) // cell, int(window.y0) // cell
        x1, y1 = int(window.x1) // cell, int(window.y1) // cell
        total[y0:y1, x0:x1] += float(score)
        count[y0:y1, x0:x1] += 1
    coarse = np.where(count > 0, total / np.maximum(count, 1), 0.0).astype(np.float32)
    # Soften the window edges (sigma 3 cells = 24 px) so the map reads as where, not as a grid.
    # scipy.ndimage is imported here: a quarter of a second that start-up need not pay.
    from scipy.ndimage import gaussian_filter

    coarse = gaussian_filter(coarse, sigma=3, mode="nearest")
    return np.asarray(Image.fromarray(coarse, mode="F").resize((size, size), Image.Resampling.BILINEAR))


def warm_up() -> None:
    """Load what drawing a keyframe needs (matplotlib's colour maps, scipy.ndimage, the fonts),
    so that the first study after start does not wait for it (about 0.7 s): called by the
    reporter's thread as it starts, beside the other start-up work."""
    heat_map([0.0] * len(GRID))
    from matplotlib import colormaps

    colormaps["jet"]  # noqa: B018 - loads the registry
    font(15), font(13)


@lru_cache(maxsize=16)
def font(size: int):
    """Pillow's scalable default font (FreeType) at ``size`` pixels."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def draw_keyframe(frame: DisplayFrame, window_scores: list[float] | None, threshold: float,
                  regions: list[Region]) -> Image.Image:
    """The keyframe (512x512 RGB) with its window-score heat map and ``regions`` of this frame outlined.

    ``regions`` should be :func:`~arcade_pacs.report.marks.selected_regions` (what the SR says);
    boxes are in source pixels. Without window scores the frame is drawn grey, without a heat map.
    """
    grey = np.repeat((frame.data * 255).astype(np.uint8)[..., None], 3, axis=2).astype(np.float32)
    if window_scores is not None:
        from matplotlib import colormaps

        colour = colormaps["jet"](heat_map(window_scores))[..., :3] * 255
        alpha = HEAT_ALPHA * frame.valid[..., None]
        grey = grey * (1 - alpha) + colour * alpha
    picture = Image.fromarray(grey.clip(0, 255).astype(np.uint8), mode="RGB")
    draw = ImageDraw.Draw(picture)
    label_font = font(15)
    best = f"max window {max(window_scores):.2f}  " if window_scores else ""
    draw.text((6, 4), f"frame {frame.frame_number}  {best}threshold {threshold:.2f}",
              fill=(255, 255, 255), font=label_font, stroke_width=2, stroke_fill=(0, 0, 0))
    draw.text((6, FRAME_SIZE - 20), TILE_NOTICE, fill=(255, 255, 255), font=font(13), stroke_width=2,
              stroke_fill=(0, 0, 0))
    mine = [r for r in regions if r.frame_number == frame.frame_number]
    boxes = [outline_pixels(to_display(r.box, frame.rows, frame.columns)) for r in mine]
    for region, (left, top, _, _) in zip(mine, boxes, strict=True):
        draw.text((left + 6, top + 5), f"{region.probability:.2f}", fill=LABEL, font=label_font,
                  stroke_width=2, stroke_fill=(0, 0, 0))
    for box in boxes:  # last, so no text ever covers an outline
        draw.rectangle(box, outline=OUTLINE, width=OUTLINE_WIDTH)
    return picture
