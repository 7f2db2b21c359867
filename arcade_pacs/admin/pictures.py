"""Pictures of a result: a keyframe with the model's window scores drawn on it.

Why the model said what it said: each of the 3x3 windows it scored is tinted by its score
(TTA mean), windows at or above the threshold are outlined in red with their score, so a
clinician can see where the model looked and how sure it was. The frame is rendered through
the same pipeline the model saw (display polarity, VOI, shutters), at 512x512.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw

from arcade_pacs.pipeline.frames import FrameSource
from arcade_pacs.pipeline.tensors import GRID


def render_keyframe(path: str, frame_number: int, window_scores: list[float], threshold: float) -> bytes:
    """PNG of 1-based ``frame_number`` of the stored instance with its window scores overlaid."""
    source = FrameSource(path)
    source.scan()
    frame = source.read([frame_number - 1]).data[0]
    grey = Image.fromarray((frame * 255).astype(np.uint8)).convert("RGBA")
    overlay = Image.new("RGBA", grey.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    # Tint each window's own 128x128 centre cell region so overlapping windows stay readable.
    for window, score in zip(GRID, window_scores, strict=True):
        cx, cy = window.x0 + window.size / 2, window.y0 + window.size / 2
        cell = (cx - 64, cy - 64, cx + 64, cy + 64)
        draw.rectangle(cell, fill=(255, 140, 0, int(110 * float(score))))
    for window, score in zip(GRID, window_scores, strict=True):
        if score >= threshold:
            draw.rectangle((window.x0 + 2, window.y0 + 2, window.x1 - 3, window.y1 - 3), outline=(255, 0, 0, 255), width=3)
            draw.text((window.x0 + 8, window.y0 + 6), f"{score:.2f}", fill=(255, 255, 0, 255))
    picture = Image.alpha_composite(grey, overlay).convert("RGB")
    ImageDraw.Draw(picture).text((6, 496), "research use only - not for diagnosis", fill=(255, 255, 255))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()
